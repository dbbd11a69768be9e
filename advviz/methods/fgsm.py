"""FGSM mixed-loss adversarial training (Bělohlávek et al. 2018, §3, eqs. 1–2, after Goodfellow
et al. 2014).

    Δ = ε · sign(∇ J(x, y; Θ))                                                  (eq. 1)
    Ĵ(x, y; Θ) = α · J(x, y; Θ) + (1 − α) · J(x + Δ, y; Θ)                     (eq. 2)

``--adv-weight`` is the paper's α, the weight of the *clean* term (the issue's "λ/α" flag);
``--epsilon`` is ε, a per-coordinate size, so a token's L2 norm is ε·√D (L∞ norm ε).

Readings / deviations:
- The paper writes ∇_Θ J, but a perturbation added to the input x must be the gradient with
  respect to x; as in Goodfellow et al. the gradient is taken w.r.t. the input word embeddings.
- The paper gives no values for α and ε: α = 0.5 is Goodfellow et al.'s; ε = 0.05 (per
  coordinate; ≈ 0.35 per token in L2 for 50-d GloVe) is our choice.
- Padding and special tokens are never perturbed.
- Dropout: Δ is added to the dropped-out embeddings of the clean pass (same mask), and the
  gradient is taken with respect to them, so in training every perturbable coordinate the
  model reads moves by exactly ±ε (``adversarial.py``, "Dropout in training").
"""

from __future__ import annotations

from dataclasses import dataclass

from .adversarial import ADV_WEIGHT_HELP, AdversarialConfig, AdversarialMethod
from ..config import hp
from .perturb import masked


@dataclass(frozen=True)
class FGSMConfig(AdversarialConfig):
    epsilon: float = hp(0.05, "perturbation size ε")
    adv_weight: float = hp(0.5, ADV_WEIGHT_HELP)

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.adv_weight <= 1.0:
            raise ValueError(f"--adv-weight (fgsm's α) must be in [0, 1], got {self.adv_weight}")


class FGSM(AdversarialMethod):
    name = "fgsm"
    Config = FGSMConfig
    paper = "Bělohlávek et al. 2018, eqs. 1-2 (Goodfellow et al. 2014)"

    def loss_weights(self) -> tuple[float, float]:
        a = float(self.config.adv_weight)
        return a, 1.0 - a

    def adversary(self, model, ids, embeds, att, y, mask, g0, generator):
        return self.config.epsilon * masked(g0.sign(), mask)  # (B, T, D), |Δ| = ε per coordinate
