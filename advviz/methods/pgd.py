"""k-step PGD in the embedding space (Madry et al. 2018), the evaluation attack of the CARL/RAR
paper (Qiu et al. 2021, §4.5, Tables 4–5: "k-PGD" with maximum perturbation norm ε ∈ {0.02,
0.075, 0.1}), solving max_{‖δ‖ ≤ ε} L_C(f(E + δ), y) (CARL eq. 1) approximately:

    δ₀ = 0, or a random start Π_ε(U(−1,1)·mask·γ/√(L·D)) when --init-mag γ > 0
    δ_{t+1} = Π_ε(δ_t + α · g_t/‖g_t‖₂)      (l2: norm per example over the flattened sequence)
    δ_{t+1} = clip_{[−ε, ε]}(δ_t + α · sign(g_t))   (linf)

Defaults: ε = 0.1, K = 3 steps, α = 2.5·ε/K when --step-size is 0 (Madry et al.'s rule of thumb),
no random start. As a training method: L + λ·L_C(f(E + δ_K)) (λ = --adv-weight, 1).

Readings: the CARL paper does not state k, α or the random start of its k-PGD; the norm is the
L2 norm of the whole example's perturbation, as in FreeLB (which the same paper uses); padding
and special tokens are never perturbed; L∞ steps are Madry et al.'s α·sign(g). As a training
method all k steps and the adversarial pass reuse the clean pass's dropped-out embeddings
(``adversarial.py``, "Dropout in training").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .adversarial import ADV_WEIGHT_HELP, AdversarialConfig, AdversarialMethod, input_grad
from ..config import hp
from .freelb import freelb_init
from .perturb import ascent_direction, project


@dataclass(frozen=True)
class PGDConfig(AdversarialConfig):
    epsilon: float = hp(0.1, "perturbation size ε")
    steps: int = hp(3, "ascent steps K")
    step_size: float = hp(0.0, "ascent step size α (pgd: 0 means 2.5·ε/K)")
    init_mag: float = hp(0.0, "random start magnitude γ (0: start at δ = 0)")
    norm: str = hp("l2", "perturbation norm", choices=["l2", "linf"])
    adv_weight: float = hp(1.0, ADV_WEIGHT_HELP)

    def __post_init__(self):
        super().__post_init__()
        if self.step_size < 0 or self.init_mag < 0:
            raise ValueError("--step-size and --init-mag must be >= 0")
        if self.norm not in ("l2", "linf"):
            raise ValueError(f"--norm must be l2 or linf, got {self.norm!r}")

    @property
    def alpha(self) -> float:
        return self.step_size if self.step_size > 0 else 2.5 * self.epsilon / self.steps


class PGD(AdversarialMethod):
    name = "pgd"
    Config = PGDConfig
    paper = "Madry et al. 2018 (k-PGD); CARL paper Tables 4-5"

    def setup(self, model, train_data=None, seed: int = 0) -> None:
        self.generator = torch.Generator().manual_seed(seed % (2**31))  # the random start, from the run seed

    def _uses_grad0(self) -> bool:
        return self.config.init_mag == 0  # with a random start the first gradient is at δ₀

    def adversary(self, model, ids, embeds, att, y, mask, g0, generator):
        cfg = self.config
        delta = project(freelb_init(embeds, mask, cfg.init_mag, cfg.norm, generator), cfg.epsilon, cfg.norm, mask)
        for t in range(cfg.steps):
            g = g0 if (t == 0 and g0 is not None) else input_grad(model, embeds, delta, att, y)[0]
            delta = project(delta + cfg.alpha * ascent_direction(g, mask, cfg.norm), cfg.epsilon, cfg.norm, mask)
        return delta  # (B, T, D), ‖δ‖ ≤ ε per example (l2) or per coordinate (linf)
