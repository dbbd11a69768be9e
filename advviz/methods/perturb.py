"""Small pure tensor functions shared by the embedding-space adversaries.

Shapes: delta/grad <float>[B,T,D]; mask <bool|float>[B,T] (1 = token that may be perturbed).
"Per example" norms run over the flattened (T, D) perturbation of one sequence, as in Miyato et
al. (2017) and FreeLB's reference code.
"""

from __future__ import annotations

import torch

EPS = 1e-12


def masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return x * mask.unsqueeze(-1).to(x.dtype)  # (B,T,D)


def token_norms(delta: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """<float>[B,T] ‖δ_i‖₂ of each token (0 where masked out)."""
    n = delta.float().norm(dim=-1)
    return n * mask.to(n.dtype) if mask is not None else n


def example_norms(delta: torch.Tensor, p: str = "l2") -> torch.Tensor:
    """<float>[B] norm of each example's flattened perturbation (l2 or linf)."""
    flat = delta.float().reshape(delta.shape[0], -1)
    return flat.norm(dim=1) if p == "l2" else flat.abs().amax(dim=1)


def normalize_l2(g: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """g / ‖g‖₂ per example over the masked sequence (zero stays zero)."""
    g = masked(g, mask)
    return g / example_norms(g).clamp(min=EPS).view(-1, 1, 1).to(g.dtype)


def project_l2(delta: torch.Tensor, eps: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Project each example onto the L2 ball ‖δ‖₂ ≤ eps (eps <= 0: unbounded, returned as is)."""
    if mask is not None:
        delta = masked(delta, mask)
    if eps <= 0:
        return delta
    n = example_norms(delta).view(-1, 1, 1)
    return delta * torch.clamp(eps / n.clamp(min=EPS), max=1.0).to(delta.dtype)


def project_linf(delta: torch.Tensor, eps: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Clamp every coordinate to [-eps, eps] (eps <= 0: unbounded)."""
    if mask is not None:
        delta = masked(delta, mask)
    return delta if eps <= 0 else delta.clamp(-eps, eps)


def project(delta: torch.Tensor, eps: float, norm: str, mask: torch.Tensor | None = None) -> torch.Tensor:
    return project_l2(delta, eps, mask) if norm == "l2" else project_linf(delta, eps, mask)


def ascent_direction(g: torch.Tensor, mask: torch.Tensor, norm: str) -> torch.Tensor:
    """Steepest-ascent unit step: g/‖g‖₂ (l2) or sign(g) (linf), on masked tokens only."""
    return normalize_l2(g, mask) if norm == "l2" else masked(g.sign(), mask)
