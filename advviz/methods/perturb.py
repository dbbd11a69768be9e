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


def example_norms(delta: torch.Tensor, p: str = "l2") -> torch.Tensor:
    """<float>[B] norm of each example's flattened perturbation (l2 or linf)."""
    flat = delta.float().reshape(delta.shape[0], -1)
    return flat.norm(dim=1) if p == "l2" else flat.abs().amax(dim=1)


def normalize(g: torch.Tensor, mask: torch.Tensor, p: str = "l2") -> torch.Tensor:
    """g / ‖g‖_p per example over the masked sequence (p = l2 or linf; zero stays zero)."""
    g = masked(g, mask)
    return g / example_norms(g, p).clamp(min=EPS).view(-1, 1, 1).to(g.dtype)


def normalize_l2(g: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """g / ‖g‖₂ per example over the masked sequence (zero stays zero)."""
    return normalize(g, mask, "l2")


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
    """Steepest-ascent unit step of PGD (Madry et al. 2018): g/‖g‖₂ (l2) or sign(g) (linf), on
    masked tokens only. FreeLB's reference steps g/‖g‖∞ for linf instead (``normalize``)."""
    return normalize_l2(g, mask) if norm == "l2" else masked(g.sign(), mask)


class DropoutMasks:
    """One set of dropout masks for every forward pass of an optimiser step (FreeLB's ``dp_masks``).

    Dropout draws from the global random generator of its device. The generator's state is saved
    when this object is made; ``replay()`` before each pass restores it, so passes of the same
    shapes in the same order draw the same masks (every ``nn.Dropout``, the RNN's embedding dropout
    and attention dropout alike, on CPU and CUDA), with no change to the model. After the last pass
    the generator stands where one pass left it, so the next batch draws new masks.
    ``enabled=False``: every pass draws its own masks."""

    def __init__(self, device: torch.device | str, enabled: bool = True):
        device = torch.device(device)
        self.enabled = enabled
        self._cpu = torch.get_rng_state() if enabled else None
        self._cuda = (device, torch.cuda.get_rng_state(device)) if enabled and device.type == "cuda" else None

    def replay(self) -> None:
        if not self.enabled:
            return
        torch.set_rng_state(self._cpu)
        if self._cuda is not None:
            torch.cuda.set_rng_state(self._cuda[1], self._cuda[0])
