"""iAdvT-Text (Sato, Suzuki, Shindo & Matsumoto, IJCAI 2018), as recapped in the SPGD paper
(Barham & Feizi 2019, §3 "Interpretable Adversarial Training", eq. 6), normalised as Sato et
al.'s released code does it (``--iadvt-norm code``, default).

For each real token i with embedding vᵢ, Uᵢ = {uᵢₖ = (v_nₖ − vᵢ)/‖v_nₖ − vᵢ‖} are the unit
directions to its K nearest vocabulary neighbours (cosine, itself excluded). The perturbation is
constrained to their span, δᵢ = Σₖ αᵢₖ · uᵢₖ, with g_α = ∇_α L_C(f(E + δ(α)), y) at α = 0; since
∂L/∂αᵢₖ = gᵢ · uᵢₖ (gᵢ = ∂L/∂vᵢ), g_α comes from the one input gradient of the clean pass, with no
extra forward. Two normalisations:

    code  (default; Sato et al.'s ``train.py`` + ``nets.py``, ``norm_sentence_level``):
          αᵢ = g_α,ᵢ / ‖g_α,ᵢ‖₂          per token, over its K weights
          dᵢ = Σₖ αᵢₖ uᵢₖ,   δ = ε · d / ‖d‖₂   over the whole sequence, so ‖δ‖₂ = ε exactly
    paper (eq. 6 as printed):
          α = ε · g_α / ‖g_α‖₂            over all (token, neighbour) weights of the example
          δᵢ = Σₖ αᵢₖ uᵢₖ                 ‖α‖₂ = ε, but ‖δ‖₂ ≠ ε: the uᵢₖ are not orthogonal
                                          (measured 1.06–1.83 ε on GloVe-50d, ‖δᵢ‖ ≤ √K‖αᵢ‖)

The released code is the default because its ε then means what AdvT's ε means (‖δ‖₂ = ε per
example), so the two are comparable at the same ε, and because the paper's results were produced
by it. The paper's reading stays available for comparison. Training loss L + λ·L_adv as AdvT
(eqs. 2–3).

Readings / deviations:
- Sato et al. compute the directions from dropped-out embeddings (``dropout(v_n) − dropout(vᵢ)``);
  here they come from the embedding matrix itself, so a direction points at a real word and
  ``moved_to`` is meaningful. The perturbation is still added after embedding dropout (the RNN
  families drop out in ``embed``), as in their code.
- Neighbours are recomputed every ``--refresh-every`` steps (default 50, as SPGD App. B); the
  directions always use the current embeddings.
- Sato et al. normalise embeddings first; here ε is in the model's own embedding units.
- Defaults ε = 15, K = 15 (the paper's LSTM settings, SPGD App. B).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .adversarial import ADV_WEIGHT_HELP, REFRESH_HELP, AdversarialConfig, AdversarialMethod, NeighborMixin
from ..config import hp
from .perturb import EPS, normalize_l2

NORMALISATIONS = ("code", "paper")


@dataclass(frozen=True)
class IAdvTConfig(AdversarialConfig):
    epsilon: float = hp(15.0, "perturbation size ε")
    k: int = hp(15, "nearest vocabulary neighbours per token (iadvt, spgd)")
    adv_weight: float = hp(1.0, ADV_WEIGHT_HELP)
    refresh_every: int = hp(50, REFRESH_HELP)
    iadvt_norm: str = hp("code", "iAdvT normalisation: Sato et al.'s released code (α per token, "
                         "then ‖δ‖₂ = ε per example) or eq. 6 as printed (‖α‖₂ = ε per example)",
                         choices=list(NORMALISATIONS))

    def __post_init__(self):
        super().__post_init__()
        if self.iadvt_norm not in NORMALISATIONS:
            raise ValueError(f"--iadvt-norm must be one of {', '.join(NORMALISATIONS)}, got {self.iadvt_norm!r}")


def iadvt_weights(g: torch.Tensor, U: torch.Tensor, mask: torch.Tensor, eps: float,
                  norm: str = "paper") -> torch.Tensor:
    """α <float>[B,T,K] from g_α = gᵢ·uᵢₖ (g [B,T,D], U [B,T,K,D]): ε·g_α/‖g_α‖ per example
    (``paper``) or g_α,ᵢ/‖g_α,ᵢ‖ per token (``code``; δ is rescaled to ε afterwards)."""
    ga = torch.einsum("btkd,btd->btk", U, g) * mask.unsqueeze(-1).to(g.dtype)  # (B, T, K)
    if norm == "code":
        return ga / ga.norm(dim=-1, keepdim=True).clamp(min=EPS)  # (B, T, K), ‖αᵢ‖ = 1 per real token
    n = ga.flatten(1).norm(dim=1).clamp(min=EPS).view(-1, 1, 1)  # (B, 1, 1)
    return eps * ga / n


class IAdvT(NeighborMixin, AdversarialMethod):
    name = "iadvt"
    Config = IAdvTConfig
    paper = "Sato et al. 2018 (iAdvT-Text); SPGD paper eq. 6"

    def adversary(self, model, ids, embeds, att, y, mask, g0, generator):
        cfg = self.config
        U, _ = self.directions(model, ids, mask)  # (B, T, K, D)
        alpha = iadvt_weights(g0, U.to(g0.dtype), mask, cfg.epsilon, cfg.iadvt_norm)  # (B, T, K)
        delta = torch.einsum("btk,btkd->btd", alpha, U.to(g0.dtype))  # (B, T, D) in span(Uᵢ)
        if cfg.iadvt_norm == "code":
            delta = cfg.epsilon * normalize_l2(delta, mask)  # ‖δ‖₂ = ε per example, still in span(Uᵢ)
        return delta
