"""AdvT-Text (Miyato, Dai & Goodfellow, ICLR 2017), as recapped in the SPGD paper (Barham &
Feizi 2019, §3, eqs. 2–5).

    L(θ) = L(x) + λ · L_Adv,   L_Adv = −log p(y | E + r; θ)                         (eqs. 2–3)
    r = ε · g / ‖g‖₂,          g = ∇_E L_C(f(E), y)  (= −∇ log p, so eq. 5's sign)   (eq. 5)

The norm runs over the whole sequence of one example (all real tokens × D), as in Miyato et al.'s
code; so ‖r‖₂ = ε per example and the per-token norms ‖rᵢ‖ share it in proportion to ‖gᵢ‖.

Defaults: ε = 5.0 (the paper's value for its 256-d LSTM, SPGD App. B), λ = 1.

Readings / deviations:
- Miyato et al. normalise the embedding matrix (zero mean, unit variance per dimension, weighted
  by frequency) before perturbing; here embeddings are used as the model has them, so ε is in the
  model's own embedding units (GloVe-50d for ``lstm``, MiniLM's word embeddings for ``minilm``:
  ε = 5 is large there; pass a smaller ``--epsilon``).
- Padding and special tokens ([CLS]/[SEP]) are never perturbed (``perturbable_mask``).
- The gradient g is taken on the same training-mode forward that gives the clean loss (dropout
  on), as in the original; as an attack it is taken in eval mode. In training the adversarial
  pass reads dropout(E) + r with the clean pass's embedding dropout mask and r intact
  (``adversarial.py``, "Dropout in training").
"""

from __future__ import annotations

from dataclasses import dataclass

from .adversarial import ADV_WEIGHT_HELP, AdversarialConfig, AdversarialMethod
from ..config import hp
from .perturb import normalize_l2


@dataclass(frozen=True)
class AdvTConfig(AdversarialConfig):
    epsilon: float = hp(5.0, "perturbation size ε")
    adv_weight: float = hp(1.0, ADV_WEIGHT_HELP)


class AdvT(AdversarialMethod):
    name = "advt"
    Config = AdvTConfig
    paper = "Miyato et al. 2017 (AdvT-Text); SPGD paper eqs. 2-5"

    def adversary(self, model, ids, embeds, att, y, mask, g0, generator):
        return self.config.epsilon * normalize_l2(g0, mask)  # (B, T, D), ‖r‖₂ = ε per example
