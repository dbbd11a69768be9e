"""ASCC: adversarial sparse convex combination (Dong, Luu, Ji, Liu, ICLR 2021, "Towards Robustness
Against Natural Language Word Substitutions"), in the embedding space of any family.

The adversary (paper §3, Eq. 4–6; reference ``dongxinshuai/ASCC`` models/BaseModelAdv.py
``get_adv_by_convex_syn``): every word xᵢ may become any point of the convex hull of its
substitution set Sᵢ = {xᵢ} ∪ N(xᵢ) (``substitution_sets.py``: Jia et al.'s sets on the model's
vocabulary, padded with a mask):

    wᵢ = softmax(ŵᵢ) over the valid members of Sᵢ (padded members weigh exactly 0)
    v̂ᵢ = Σⱼ wᵢⱼ · E[sᵢⱼ]                       a point of the hull, δᵢ = v̂ᵢ − E[xᵢ]
    max_ŵ  KL(p(·|x) ‖ p(·|v̂)) − (α / 4096) · Σᵢ H(wᵢ)   H(w) = −Σⱼ wⱼ log wⱼ, the sparsity term (Eq. 6)

ŵ starts random (the reference's ``kaiming_normal_`` on a [B,T,S,1] tensor: N(0, 2/(T·S))) and
takes ``--steps`` Adam steps of size ``--step-size`` on −objective (the reference's Adam, its weight
decay 2e-5 included). The training objective (Eq. 7; TextDefender ``trainer/ascc.py``):

    L(θ) = CE(f(x), y) + β · KL(p(·|x) ‖ p(·|v̂*))     v̂* the adversary's hull point, fixed

with the gradient through both distributions, as the reference's ``F.kl_div`` does.
``--adv-ce-weight`` γ adds γ·CE(f(v̂*), y), the ASCC reference's ``weight_adv`` term (0 in its
published runs and here by default).

Defaults: K = 5 steps (TextDefender ``--num_steps``), α = 10, β = 4 (the paper's and TextDefender's
``--alpha``/``--beta``), step size 10 (the ASCC reference's ``w_optm_lr`` for its word models;
``FAMILY_PRESETS["hf"]`` gives 1, its ``bert_w_optm_lr``).

The weight of the entropy term is the references' (``REFERENCE_POSITIONS``): both write the inner
loss as −Σ_b KL_b + α·mean H, the KL summed over the batch and H averaged over its padded [B, T]
grid, which is α/(B·T) per position — α/4096 on TextDefender's SST-2 shape (32 sentences padded to
128). That weight is fixed here so a sentence's adversary does not depend on its batch. Read as
α·Σᵢ H (per token, 4096× stronger) the term decides the sign of Adam's first steps and the
adversary picks a near-random vertex: on the sst2-sent LSTM baseline (300 dev sentences) it left
62.0 % accuracy on the hull at KL 0.18, against 22.7 % at KL 1.04 with the references' weight
(22.3 % with α = 0; ``benchmarks/ascc_hull_gap.py``), and ASCC trained against it reached 29.8 %
under textfooler-cf (docs/results.md §15).

Measured with the three readings of the references (this weight, the members' rows trained, the
substitutes in the vocabulary: ``train --vocab-substitutes``, on by default for this method) on the
GloVe-50d LSTM, sst2-sent, 6 epochs, 3 seeds, ``--adv-weight 1``: 61.9 % of 500 dev sentences keep
their label under ``textattack:textfooler-cf`` against the baseline's 19.9 % and FreeLB's 22.3 %,
at 80.8 % clean accuracy (baseline 79.7 %); β = 4 gives 59.0 % (seed 0). docs/results.md §15.4.

The hull point's loss trains every member's embedding row, as in the references (the ASCC
reference re-embeds the sets in ``text_syn_p_to_logit``, TextDefender's ``input_nbr_embed`` is
read from the trainable table): ∂/∂E[sⱼ] = wⱼ·∂L/∂v̂, so the outer KL pulls a word's synonyms
towards the rows that keep its prediction. ``--detach-substitutes`` stops the gradient at the
token's own row (the ablation of docs/results.md §15).

Where the references and this code differ, and the reading chosen:
- **KL, not CE, in the inner loop.** The ASCC reference's LSTM/CNN training calls the adversary with
  ``loss_func='ce'`` (its BERT training and the paper's Eq. 6 use KL); this follows the paper,
  for every family. ``'ce'`` is not offered.
- **Entropy weight.** The ASCC reference's ``--train_attack_sparse_weight`` default is 15;
  the paper and TextDefender use α = 10, taken here.
- **Eval mode for the inner steps** (the reference's ``eval_adv_mode``): the K steps and p(·|x)
  they aim at are computed with dropout off, then the model's mode is restored for the training
  passes. Those read one embedding dropout mask: the members' rows are embedded under it
  (``SubstitutionMixin.hull_rows``), so the hull pass reads dropout(v̂) exactly and the clean
  pass dropout(E[x]); the encoder's dropouts draw per pass (as ``adversarial.py``).
- Padding, structural tokens, unknown words and words without a substitute on the model's
  vocabulary (multi-piece WordPiece words among them) have only themselves: w = 1, δᵢ = 0.

As an attack (``--attack ascc``) the same adversary runs on the model in eval mode and returns
δ; :meth:`ASCC.perturb_with_sets` also returns each token's set and weights, which ``inspect``,
``words``, the Word atlas and the app show (``moved_to`` = the substitute with the largest weight,
``substitution_sets.leaning``).

Cost: clean forward+backward, K forward+backward passes to ŵ only (no parameter gradients),
one no-grad forward for p(·|x) and the hull point's forward+backward: about K + 2 plain steps
(``benchmarks/method_costs.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import hp
from .base import Method, MethodConfig, StepOutput, classification_loss, kl_with_logits, unwrap
from .perturb import DropoutMasks
from .substitution_sets import SubstitutionMixin, detach_substitutes_field, masked_softmax, neighbors_field

#: The positions the references' entropy term is averaged over: TextDefender pads SST-2 to 128
#: tokens and trains in batches of 32 (its ``loss_sparse`` is a ``.mean()`` over the [B, T] grid,
#: next to a KL summed over the batch). Here that weight per position is fixed, α / 4096, so one
#: sentence's adversary is the same in whatever batch (or ``inspect`` call) it is attacked.
REFERENCE_POSITIONS = 32 * 128


@dataclass(frozen=True)
class ASCCConfig(MethodConfig):
    steps: int = hp(5, "ascc: Adam steps on the convex weights ŵ")
    step_size: float = hp(10.0, "ascc: Adam step size on ŵ (the reference's w_optm_lr)")
    sparse_weight: float = hp(10.0, "ascc: α, weight of the entropy term that keeps the weights sparse")
    adv_weight: float = hp(4.0, "ascc: β in CE + β·KL(p(x) ‖ p(v̂))")
    adv_ce_weight: float = hp(0.0, "ascc: γ, weight of CE(f(v̂), y) added to the loss (the ASCC reference's "
                                   "--weight_adv; 0 in its published runs)")
    neighbors: str | None = neighbors_field()
    detach_substitutes: bool = detach_substitutes_field()

    def __post_init__(self):
        super().__post_init__()
        if self.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {self.steps}")
        if not self.step_size > 0:
            raise ValueError(f"--step-size must be > 0, got {self.step_size}")
        if self.sparse_weight < 0 or self.adv_weight < 0 or self.adv_ce_weight < 0:
            raise ValueError("--sparse-weight, --adv-weight and --adv-ce-weight must be >= 0")


@dataclass
class HullPoint:
    """The adversary's result: δ <float>[B,T,D], the sets' ids <long>[B,T,S] and weights <float>[B,T,S]
    (0 on padded members), and the KL it reached (when measured) and started from per example <float>[B]."""

    delta: torch.Tensor
    ids: torch.Tensor
    weights: torch.Tensor
    kl: torch.Tensor | None
    kl_init: torch.Tensor


def entropy(w: torch.Tensor) -> torch.Tensor:
    """H(w) <float>[...] over the last axis (0·log 0 = 0)."""
    return -(w * torch.log(w.clamp(min=1e-30))).sum(-1)


class ASCC(SubstitutionMixin, Method):
    name = "ascc"
    Config = ASCCConfig
    is_attack = True
    paper = "Dong et al. 2021, ASCC (ICLR); TextDefender trainer/ascc.py"

    def __init__(self, config: ASCCConfig | None = None):
        super().__init__(config)
        self.generator: torch.Generator | None = None

    def setup(self, model, train_data=None, seed: int = 0) -> None:
        self.generator = torch.Generator().manual_seed(seed % (2**31))  # ŵ's random start
        super().setup(model, train_data, seed)

    def hull_point(self, model, ids, att, mask, generator=None, measure: bool = False) -> HullPoint:
        """The K Adam steps on ŵ (module docstring), on the model in whatever mode it is in.
        ``measure``: one more forward for the KL the final weights reach (``HullPoint.kl``; None
        otherwise, so training and attacks pay only the K steps)."""
        cfg, core = self.config, unwrap(model)
        s_ids, valid, _, rows = self.hull_rows(core, ids, mask)  # (B,T,S), (B,T,S), _, (B,T,S,D)
        B, T, S = s_ids.shape
        embeds = core.embed(ids).detach()  # (B, T, D)
        base = rows[:, :, 0]  # E[x] (B, T, D)
        with torch.no_grad():
            p_logits = model(inputs_embeds=embeds, attention_mask=att).logits.float()  # (B, C)
        std = (2.0 / (T * S)) ** 0.5
        w = (torch.randn(B, T, S, generator=generator) * std).to(embeds.device).requires_grad_()
        opt = torch.optim.Adam([w], lr=cfg.step_size, weight_decay=2e-5)
        movable = valid[..., 1:].any(-1) & mask.bool()  # (B, T)

        def point(w):
            wts = masked_softmax(w, valid)  # (B, T, S)
            v = (wts.unsqueeze(-1) * rows.float()).sum(2)  # (B, T, D)
            delta = (v - base.float()).to(embeds.dtype) * movable.unsqueeze(-1)
            return wts, delta

        kl_init = None
        with torch.enable_grad():
            for _ in range(cfg.steps):
                wts, delta = point(w)
                kl = kl_with_logits(p_logits, model(inputs_embeds=embeds + delta, attention_mask=att).logits)  # (B,)
                if kl_init is None:
                    kl_init = kl.detach()
                h = (entropy(wts) * movable).sum(-1) / REFERENCE_POSITIONS  # (B,)
                loss = (-kl + cfg.sparse_weight * h).sum()
                (g,) = torch.autograd.grad(loss, w)
                w.grad = g
                opt.step()
        with torch.no_grad():
            wts, delta = point(w)
            kl = kl_with_logits(p_logits, model(inputs_embeds=embeds + delta, attention_mask=att).logits) \
                if measure else None
        return HullPoint(delta.detach(), s_ids, wts.detach(), kl, kl_init)

    # -- training ------------------------------------------------------------------------------
    def train_step(self, model, batch, backward) -> StepOutput:
        cfg, core = self.config, unwrap(model)
        ids, att, y = batch["input_ids"], batch["attention_mask"], batch["labels"]
        mask = core.perturbable_mask(ids, att)
        was = model.training
        model.eval()  # the reference's eval_adv_mode: the inner steps without dropout
        try:
            hull = self.hull_point(model, ids, att, mask, self.generator)
        finally:
            model.train(was)
        masks = DropoutMasks(ids.device)
        # the members under this step's embedding mask; their rows learn from the hull pass (the references)
        _, valid, _, rows = self.hull_rows(core, ids, mask, masks, grad=not cfg.detach_substitutes)
        movable = valid[..., 1:].any(-1, keepdim=True)
        delta = ((hull.weights.unsqueeze(-1) * rows.float()).sum(2) - rows[:, :, 0].float()) * movable
        masks.replay()
        embeds = core.embed(ids)  # dropout(E[x]) = rows[:, :, 0], shared by the clean and the hull pass
        out = model(inputs_embeds=embeds, attention_mask=att)
        clean = classification_loss(out, y)
        adv = model(inputs_embeds=embeds + delta.to(embeds.dtype), attention_mask=att)  # dropout(v̂)
        kl = kl_with_logits(out.logits, adv.logits).mean()
        loss = clean + cfg.adv_weight * kl
        logs = {"clean_loss": clean.item(), "kl": kl.item(), "delta_norm": float(hull.delta.flatten(1).norm(dim=1).mean())}
        if cfg.adv_ce_weight:
            adv_ce = classification_loss(adv, y)
            loss = loss + cfg.adv_ce_weight * adv_ce
            logs["adv_loss"] = adv_ce.item()
        backward(loss)
        return StepOutput(loss.detach(), out.logits.detach(), logs)

    # -- attack --------------------------------------------------------------------------------
    def perturb_with_sets(self, model, batch, generator=None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """(δ <float>[B,T,D], (set ids <long>[B,T,S], weights <float>[B,T,S])): what the attack
        loop keeps so ``moved_to`` and the weight bars come from the sets (``analysis/attacks.py``)."""
        core = unwrap(model)
        ids, att = batch["input_ids"], batch["attention_mask"]
        hull = self.hull_point(model, ids, att, core.perturbable_mask(ids, att), generator)
        return hull.delta, (hull.ids, hull.weights)

    def perturb(self, model, batch, generator=None) -> torch.Tensor:
        return self.perturb_with_sets(model, batch, generator)[0]
