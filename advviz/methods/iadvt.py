"""iAdvT-Text (Sato, Suzuki, Shindo & Matsumoto, IJCAI 2018), as recapped in the SPGD paper
(Barham & Feizi 2019, §3 "Interpretable Adversarial Training", eq. 6).

For each real token i with embedding vᵢ, Uᵢ = {uᵢₖ = (v_nₖ − vᵢ)/‖v_nₖ − vᵢ‖} are the unit
directions to its K nearest vocabulary neighbours (cosine, itself excluded). The perturbation is
constrained to their span:

    δᵢ = Σₖ αᵢₖ · uᵢₖ
    α = ε · g_α / ‖g_α‖₂,   g_α = ∇_α L_C(f(E + δ(α)), y) at α = 0                  (eq. 6)

Since ∂L/∂αᵢₖ = gᵢ · uᵢₖ (gᵢ = ∂L/∂vᵢ), g_α comes from the one input gradient of the clean pass,
with no extra forward. Training loss L + λ·L_adv as AdvT (eqs. 2–3).

Readings / deviations:
- ‖g_α‖₂ runs over all (token, neighbour) weights of one example, as AdvT's norm runs over the
  sequence; so ‖α‖₂ = ε per example. ‖δ‖ itself is not ε (the uᵢₖ are not orthogonal):
  ‖δᵢ‖ ≤ Σₖ |αᵢₖ| ≤ √K · ‖αᵢ‖.
- Neighbours are recomputed every ``--refresh-every`` steps (default 50, as SPGD App. B); the
  directions always use the current embeddings.
- Sato et al. normalise embeddings first; here ε is in the model's own embedding units.
- Defaults ε = 15, K = 15 (the paper's LSTM settings, SPGD App. B).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .adversarial import ADV_WEIGHT_HELP, REFRESH_HELP, AdversarialConfig, AdversarialMethod, NeighborMixin
from .base import hp
from .perturb import EPS


@dataclass(frozen=True)
class IAdvTConfig(AdversarialConfig):
    epsilon: float = hp(15.0, "--epsilon", "perturbation size ε")
    k: int = hp(15, "--k", "nearest vocabulary neighbours per token (iadvt, spgd)")
    adv_weight: float = hp(1.0, "--adv-weight", ADV_WEIGHT_HELP)
    refresh_every: int = hp(50, "--refresh-every", REFRESH_HELP)


def iadvt_weights(g: torch.Tensor, U: torch.Tensor, mask: torch.Tensor, eps: float) -> torch.Tensor:
    """α <float>[B,T,K] = ε·g_α/‖g_α‖ per example, g_α = gᵢ·uᵢₖ (g [B,T,D], U [B,T,K,D])."""
    ga = torch.einsum("btkd,btd->btk", U, g) * mask.unsqueeze(-1).to(g.dtype)  # (B, T, K)
    n = ga.flatten(1).norm(dim=1).clamp(min=EPS).view(-1, 1, 1)  # (B, 1, 1)
    return eps * ga / n


class IAdvT(NeighborMixin, AdversarialMethod):
    name = "iadvt"
    Config = IAdvTConfig
    paper = "Sato et al. 2018 (iAdvT-Text); SPGD paper eq. 6"

    def adversary(self, model, ids, embeds, att, y, mask, g0, generator):
        U, _ = self.directions(model, ids, mask)  # (B, T, K, D)
        alpha = iadvt_weights(g0, U.to(g0.dtype), mask, self.config.epsilon)  # (B, T, K)
        return torch.einsum("btk,btkd->btd", alpha, U.to(g0.dtype))  # (B, T, D) in span(Uᵢ)
