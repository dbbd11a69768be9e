"""SPGD, sparse projected gradient descent (Barham & Feizi 2019, §4, Algorithm 1, eq. 7, Fig. 2).

    r ← M steps of AdvT-Text: r ← r + (ε/M) · g/‖g‖₂,  g = ∇_r L_C(f(E + r), y)       (Alg. 1, 1st loop)
    r̂ᵢ = (rᵢ · u*ᵢ) u*ᵢ,  u*ᵢ = argmax_{u ∈ Uᵢ} rᵢ · u                                  (eq. 7, 2nd loop)
    keep r̂ᵢ only for the n = min(N, max(1, ⌊(1−σ)N⌋)) tokens with the largest ‖rᵢ‖₂     (Alg. 1, 3rd loop)

Uᵢ are the unit directions from token i to its K nearest vocabulary neighbours (cosine, itself
excluded); N is the number of real tokens of the example. Training loss L + λ·L_adv (eqs. 2–3).

Readings of an ambiguous paper (each a choice made here):
- Which tokens are zeroed: the prose of §4 says the ⌊(1−σ)N⌋ perturbations with the *smallest*
  norm are set to 0, but Algorithm 1 (TopK of ‖rᵢ‖² kept, "zero indices with small
  perturbations"), Fig. 2 (σ = 0.5 keeps "the 50% with largest norm") and "changes only a few
  words" all agree on keeping the ⌊(1−σ)N⌋ *largest*; we follow the algorithm. At least one token
  is kept, so short sentences are still attacked.
- Algorithm 1 writes rᵢ = ε gᵢ/‖gᵢ‖ inside a per-token loop, which would give every token norm ε
  and make the top-K by norm arbitrary; its comment says "this is just vanilla AdvT-Text", whose
  norm runs over the whole sequence (eq. 5), so we normalise over the sequence.
- M > 1 steps: each step adds (ε/M)·g/‖g‖ (no projection in between), so M = 1 is exactly AdvT and
  ‖r‖₂ ≤ ε for any M.
- eq. 7 is applied literally: if every rᵢ·u is negative, the coefficient is negative and the
  token moves away from its best neighbour (still along one neighbour direction).
- Sparsification ranks the raw ‖rᵢ‖ (Algorithm 1), not ‖r̂ᵢ‖.
- Dropout: r̂ is added to the clean pass's dropped-out embeddings (same mask), so the recurrent
  layer reads each kept token moved along exactly one neighbour direction (``adversarial.py``,
  "Dropout in training"); the M > 1 inner steps reuse that embedding tensor too.
- Defaults: K = 15, σ = 0.75, M = 1 (the paper's best), ε = 25 (App. B, for 256-d embeddings
  with unit-variance coordinates; in GloVe-50d units this is strong: lower ``--epsilon`` for
  minilm). Neighbours are rebuilt every 50 steps (App. B: "every 50 batches").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .adversarial import (ADV_WEIGHT_HELP, REFRESH_HELP, AdversarialConfig, AdversarialMethod, NeighborMixin,
                          input_grad)
from ..config import hp
from .perturb import normalize_l2


@dataclass(frozen=True)
class SPGDConfig(AdversarialConfig):
    epsilon: float = hp(25.0, "perturbation size ε")
    k: int = hp(15, "nearest vocabulary neighbours per token (iadvt, spgd)")
    sparsity: float = hp(0.75, "SPGD σ: only the ⌊(1−σ)N⌋ largest token perturbations are kept")
    steps: int = hp(1, "ascent steps (SPGD's M)")
    adv_weight: float = hp(1.0, ADV_WEIGHT_HELP)
    refresh_every: int = hp(50, REFRESH_HELP)

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"--sparsity must be in [0, 1), got {self.sparsity}")


def keep_counts(n_tokens: torch.Tensor, sparsity: float) -> torch.Tensor:
    """<long>[B] min(N, max(1, ⌊(1−σ)N⌋)) per example (0 for an empty example)."""
    n = n_tokens.long()
    k = torch.tensor([math.floor((1.0 - sparsity) * int(v) + 1e-9) for v in n], dtype=torch.long, device=n.device)
    return torch.minimum(n, k.clamp(min=1))


def top_tokens(norms: torch.Tensor, mask: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """<bool>[B,T]: the counts[b] masked tokens of each row with the largest norms [B,T]."""
    scores = norms.masked_fill(~mask.bool(), float("-inf"))  # (B, T)
    ranks = scores.argsort(dim=1, descending=True, stable=True).argsort(dim=1)  # (B, T) 0 = largest
    return (ranks < counts.view(-1, 1)) & mask.bool()


def project_on_best_direction(r: torch.Tensor, U: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """eq. 7: (r̂ <float>[B,T,D], index of u* <long>[B,T]); r [B,T,D], U [B,T,K,D]."""
    dots = torch.einsum("btkd,btd->btk", U, r)  # (B, T, K)
    best = dots.argmax(dim=-1)  # (B, T)
    coef = dots.gather(-1, best.unsqueeze(-1))  # (B, T, 1)
    u = U.gather(2, best[..., None, None].expand(-1, -1, 1, U.shape[-1])).squeeze(2)  # (B, T, D)
    return coef * u, best


class SPGD(NeighborMixin, AdversarialMethod):
    name = "spgd"
    Config = SPGDConfig
    paper = "Barham & Feizi 2019, Algorithm 1, eq. 7"

    def adversary(self, model, ids, embeds, att, y, mask, g0, generator):
        cfg = self.config
        step = cfg.epsilon / cfg.steps
        r = step * normalize_l2(g0, mask)  # (B, T, D)
        for _ in range(cfg.steps - 1):
            g, _ = input_grad(model, embeds, r, att, y)
            r = r + step * normalize_l2(g, mask)
        U, _ = self.directions(model, ids, mask)  # (B, T, K, D)
        r_hat, _ = project_on_best_direction(r, U.to(r.dtype))
        keep = top_tokens(r.norm(dim=-1), mask, keep_counts(mask.sum(1), cfg.sparsity))  # (B, T)
        return r_hat * keep.unsqueeze(-1).to(r.dtype)  # (B, T, D)
