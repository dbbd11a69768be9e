"""Helpers for multi-process training (``accelerate launch`` / ``torchrun``); no-ops in one process."""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


@torch.no_grad()
def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Concatenate every process's rows of ``x`` (B_r, ...) in rank order, in every process.

    Batches may differ in size across ranks (the last batch of an epoch), so rows are padded to the
    largest before ``all_gather`` and trimmed after. Detached: used for bookkeeping (CARL's memory
    banks, Eq. 5), never for gradients."""
    if world_size() == 1:
        return x.detach()
    x = x.detach().contiguous()
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    longest = int(max(int(s) for s in sizes))
    padded = torch.zeros((longest, *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s)] for p, s in zip(parts, sizes)])
