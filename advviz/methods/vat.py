"""VAT, virtual adversarial training (Miyato, Maeda, Koyama & Ishii, TPAMI 2018 / ICLR 2016), in
the embedding space of text classifiers as Miyato, Dai & Goodfellow (ICLR 2017, the AdvT-Text
paper, §3 eqs. 6–7) apply it: the label-free half of that paper.

    p = p(· | E; θ̂)                                   the model's own prediction, held constant
    d ~ N(0, I) on the perturbable tokens; for i = 1..I (--power-iterations, default 1):
        g = ∇_r KL(p ‖ p(· | E + r; θ̂))  at  r = ξ · d/‖d‖₂           (finite-difference power step)
        d = g
    r_vadv = ε · g / ‖g‖₂                             ‖·‖₂ over one sequence's (T, D): ‖r_vadv‖₂ = ε
    L(θ) = L_C(labelled rows) + λ · mean over all rows of KL(p ‖ p(· | E + r_vadv; θ))       (eq. 7)

No label is read: p is the model's prediction, so VAT learns from unlabeled text too
(``uses_unlabeled``: under ``--labeled-fraction`` / ``--unlabeled`` each batch holds labelled and
unlabeled rows; the KL term runs over both, the cross-entropy over the labelled ones only, as
Miyato et al. apply the virtual adversarial loss to the unlabeled stream). As an attack
(``perturb``), r_vadv moves the model's own prediction as far as the power iteration finds
(KL-wise) within ‖r‖₂ = ε; ``batch["labels"]`` is never read.

Defaults: ε = 5.0 and ξ = 0.1 (Miyato et al.'s text code: ``perturb_norm_length`` 5.0,
``small_constant_for_finite_diff`` 0.1; ξ = 1e-6 in the image paper), one power iteration, λ = 1.
``--preset family`` scales ε for the model family as for AdvT (``config.FAMILY_PRESETS``).

Readings:
- Norms run per example over the whole sequence (all real tokens × D), as for AdvT (``advt.py``);
  padding and special tokens get no perturbation (``perturbable_mask``), so d is drawn and
  normalised on the perturbable positions only (their ``_mask_by_length``).
- Dropout, as for AdvT: ``embed`` is called once, so the clean pass, every power-iteration pass
  and the adversarial pass read dropout(E) (+ r) with one embedding-dropout mask; the dropouts
  after the embeddings draw new masks on each pass, as in the reference code, where each pass is
  a new application of the network. p comes from the clean training pass (dropout on).
- The power iteration and the attack take gradients with ``autograd.grad`` on r only; no
  parameter gradient is written outside the one ``backward(loss)``.
- Miyato et al. also normalise the embedding matrix (frequency-weighted zero mean, unit variance)
  before perturbing; here ε is in the model's own embedding units, as for every other method.
- Random draws (d) come from the method's generator, seeded from the run seed (the attack's from
  the caller's generator), never from global state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import hp
from .adversarial import AdversarialConfig
from .base import Method, StepOutput, kl_with_logits, supervised_loss, unwrap
from .perturb import masked, normalize_l2


@dataclass(frozen=True)
class VATConfig(AdversarialConfig):
    epsilon: float = hp(5.0, "perturbation size ε")
    xi: float = hp(0.1, "VAT: finite-difference size ξ of the power iteration")
    power_iterations: int = hp(1, "VAT: power-iteration steps for r_vadv")
    adv_weight: float = hp(1.0, "λ in L + λ·KL(p(y|E) ‖ p(y|E+r_vadv)) (vat)")

    def __post_init__(self):
        super().__post_init__()
        if not self.xi > 0:
            raise ValueError(f"--xi must be > 0, got {self.xi}")
        if self.power_iterations < 1:
            raise ValueError(f"--power-iterations must be >= 1, got {self.power_iterations}")


def random_unit(embeds: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """d/‖d‖₂ per example, d ~ N(0, I) on the perturbable positions <float>[B,T,D] (drawn on CPU
    from ``generator``, so the draw is the same on every device)."""
    d = torch.randn(embeds.shape, generator=generator, dtype=torch.float32).to(embeds.device, embeds.dtype)
    return normalize_l2(d, mask)


def virtual_adversary(model, embeds: torch.Tensor, att: torch.Tensor, mask: torch.Tensor, p_logits: torch.Tensor,
                      epsilon: float, xi: float, iterations: int, generator) -> torch.Tensor:
    """r_vadv <float>[B,T,D] with ‖r‖₂ = ε per example (0 for an example with nothing to perturb).

    ``embeds`` (detached) are the inputs of the clean pass and ``p_logits`` (detached) its logits."""
    d = random_unit(embeds, mask, generator)
    with torch.enable_grad():
        for _ in range(iterations):
            r = (xi * d).detach().requires_grad_()
            q = model(inputs_embeds=embeds + r, attention_mask=att).logits
            kl = kl_with_logits(p_logits, q).sum()  # sum: each example's gradient is its own
            (g,) = torch.autograd.grad(kl, r)
            d = normalize_l2(g.detach(), mask)
    return epsilon * masked(d, mask)


class VAT(Method):
    name = "vat"
    Config = VATConfig
    is_attack = True
    uses_unlabeled = True
    paper = "Miyato et al. 2018 (VAT); Miyato, Dai & Goodfellow 2017 §3 (text)"

    def __init__(self, config: VATConfig | None = None):
        super().__init__(config)
        self.generator = torch.Generator().manual_seed(0)

    def setup(self, model, train_data=None, seed: int = 0) -> None:
        self.generator = torch.Generator().manual_seed(seed % (2**31))  # d, from the run seed

    def train_step(self, model, batch, backward) -> StepOutput:
        cfg, core = self.config, unwrap(model)
        ids, att = batch["input_ids"], batch["attention_mask"]
        mask = core.perturbable_mask(ids, att)  # (B, T)
        embeds = core.embed(ids)  # (B, T, D) dropout(E), attached to the embedding weights
        out = model(inputs_embeds=embeds, attention_mask=att)
        clean = supervised_loss(out.logits, batch)
        p = out.logits.detach()  # (B, C) held constant (θ̂)
        r = virtual_adversary(model, embeds.detach(), att, mask, p, cfg.epsilon, cfg.xi, cfg.power_iterations,
                              self.generator)
        adv = model(inputs_embeds=embeds + r, attention_mask=att)
        kl = kl_with_logits(p, adv.logits).mean()
        loss = clean + cfg.adv_weight * kl
        backward(loss)
        logs = {"clean_loss": clean.item(), "vat_kl": kl.item(),
                "delta_norm": float(r.flatten(1).norm(dim=1).mean())}
        return StepOutput(loss.detach(), out.logits.detach(), logs)

    def perturb(self, model, batch, generator=None) -> torch.Tensor:
        cfg, core = self.config, unwrap(model)
        ids, att = batch["input_ids"], batch["attention_mask"]  # labels are never read
        mask = core.perturbable_mask(ids, att)
        embeds = core.embed(ids).detach()
        with torch.no_grad():
            p = model(inputs_embeds=embeds, attention_mask=att).logits.detach()
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        return virtual_adversary(model, embeds, att, mask, p, cfg.epsilon, cfg.xi, cfg.power_iterations,
                                 gen).detach()
