"""DNE: Dirichlet neighbourhood ensemble (Zhou, Zheng, Hsieh, Chang, Huang, ACL 2021, "Defense
against Synonym Substitution-based Adversarial Attacks via Dirichlet Neighborhood Ensemble"), in
the embedding space of any family.

The neighbourhood (paper §3.1–3.2; TextDefender ``utils/dne_utils.py`` ``DecayAlphaHull``,
``dugu9sword/dne``): every word xᵢ may become a convex combination of Sᵢ = {xᵢ} ∪ its first-
and second-order substitutes (``substitution_sets.build_table(second_order=True)``, at most
``--max-set-size`` members, the reference's ``nbr_num`` 50):

    wᵢ ~ Dir(α, …, α [xᵢ and first order], α·γ, …, α·γ [second order])     α = --dir-alpha, γ = --dir-decay
    v̂ᵢ = Σⱼ wᵢⱼ · E[sᵢⱼ],   δᵢ = v̂ᵢ − E[xᵢ]

Training (TextDefender ``trainer/dne.py``, the reference's ``WeightedEmbedding``): the logits of
the weights start at ℓ₀ = log(w + 1e-6) for the Dirichlet sample w, and ``--steps`` K ascent
steps follow, each on the gradient of the loss at the previous point, normalised per token:

    pass 0:  L₀ = CE(f(v̂(softmax ℓ₀)), y)
    pass t:  ℓ_t = ℓ_{t−1} + η · g/‖g‖₂,  g = ∂L_{t−1}/∂ℓ_{t−1} per token,  L_t = CE(f(v̂(softmax ℓ_t)), y)
    ∇θ = ∂L₀/∂θ + (1/K) Σ_{t=1..K} ∂L_t/∂θ   (every pass's parameter gradient accumulates, as FreeLB)

η = ``--step-size`` (the reference's ``adv_steps`` 10), K = 3 (``adv_iteration``), α = 1,
γ = 0.5 (its AG's News values; the reference's IMDB values are 0.1 / 0.1). The weights of the
passes are the authors' (``dugu9sword/dne`` allennlpx/training/adv_trainer.py: the Dirichlet pass's
loss, then each ascent pass's ``batch_loss / adv_iteration``); TextDefender's ``trainer/dne.py`` sums
the K + 1 losses unscaled, which gives the ascent passes K× the weight.

Measured on the GloVe-50d LSTM, sst2-sent, seed 0 (issue 28, docs/results.md §15.4): the model never
leaves chance (dev 50.9 %), with the authors' pass weights or TextDefender's, with every member's
row trained or only the token's, with α = γ = 0.1, η = 1, at most 8 substitutes or a clean pass
added; and after one epoch of plain training (the authors' warm-up, 70.9 %; a scratch copy) one
epoch of DNE takes it back to 50.9 % (the constant prediction). The reason is the adversary's strength on short sentences: on the
trained baseline, three ascent steps inside the hull leave 4.0 % of 300 dev sentences correct
(9.3 % with at most 8 substitutes, 6.0 % without the ``<unk>`` members), and DNE trains on those points
only — unlike ASCC, whose clean pass keeps the label signal. K = 0 (the Dirichlet samples alone)
learns (75.0 % after 3 epochs). No family preset is set.

Where the reference and this code differ, and the reading chosen:
- **Inference is plain** (x's own embeddings), not the paper's ensemble of sampled hull points
  (§3.3: the prediction averages f over hull samples). advviz has one prediction path for
  every checkpoint (``Model.predict``/``evaluate``, the attacks, the app); an ensemble there
  would change every analysis of a DNE model. The method records ``"inference": "plain"`` in
  the checkpoint's metrics. Measured (``benchmarks/dne_ensemble.py``, 16 samples, sst2-sent dev,
  872 sentences; an LSTM trained one epoch with K = 0, seed 0): plain 65.4 %, ensemble 64.4 %,
  9.4 % of the predictions differ; clean accuracy under attack not measured.
- The Dirichlet draws come from the method's generator (seeded by ``--seed``, resumable), one
  fresh sample per token per step; the reference cycles through a cache of 10,000 samples per set size.
- The hull point enters the model through ``embed`` (the contract of every adversary): the
  members' rows are embedded under the step's one dropout mask, so the encoder reads dropout(v̂)
  exactly, as the reference's ``WeightedEmbedding`` gives (``SubstitutionMixin.hull_rows``); all
  K + 1 passes share that mask and the encoder's (``perturb.DropoutMasks``, FreeLB's
  ``dp_masks``). As in the reference (its ``WeightedEmbedding`` looks the members up in the
  trainable table), every pass's loss reaches each member's row, wⱼ·∂L/∂v̂; the passes read the
  rows through one leaf and its gradient, summed, goes into the table once after the last pass
  (re-embedding the members per pass cost 6.2 plain steps; one leaf and one gather for all
  members, ``Classifier.embed_members``, 4.3 against the floor of 4). ``--detach-substitutes`` stops the
  gradient at the token's own row.
- The first pass is a hull sample, not the clean sentence: the reference never trains on x
  itself (its ``warm_mode`` only applies before training).
- Tokens with no substitute on the model's vocabulary, unknown words, padding and structural
  tokens have only themselves (w = 1, δᵢ = 0).

Cost: K + 1 forward+backward passes (the logits' gradient comes with each backward), the pass
floor of ``benchmarks/method_costs.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import hp
from .base import Method, MethodConfig, StepOutput, classification_loss, unwrap
from .perturb import DropoutMasks
from .substitution_sets import SubstitutionMixin, detach_substitutes_field, masked_softmax, neighbors_field


@dataclass(frozen=True)
class DNEConfig(MethodConfig):
    steps: int = hp(3, "dne: ascent steps on the Dirichlet logits (the reference's adv_iteration)")
    step_size: float = hp(10.0, "dne: ascent step size on the logits, per token (the reference's adv_steps)")
    dir_alpha: float = hp(1.0, "dne: Dirichlet concentration α of the word and its first-order substitutes")
    dir_decay: float = hp(0.5, "dne: second-order substitutes get α·decay")
    max_set_size: int = hp(50, "dne: at most this many hull vertices per word, itself included (nbr_num)")
    neighbors: str | None = neighbors_field()
    detach_substitutes: bool = detach_substitutes_field()

    def __post_init__(self):
        super().__post_init__()
        if self.steps < 0:
            raise ValueError(f"--steps must be >= 0, got {self.steps}")
        if self.step_size < 0:
            raise ValueError(f"--step-size must be >= 0, got {self.step_size}")
        if not self.dir_alpha > 0 or not 0 < self.dir_decay <= 1:
            raise ValueError("--dir-alpha must be > 0 and --dir-decay in (0, 1]")
        if self.max_set_size < 1:
            raise ValueError(f"--max-set-size must be >= 1, got {self.max_set_size}")


def dirichlet(valid: torch.Tensor, first: torch.Tensor, alpha: float, decay: float,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """<float>[B,T,S] convex weights: Dir(α on the first ``first`` members, α·decay on the rest of
    the valid ones), 0 on invalid members. Sampled as normalised Gamma draws (torch's own
    Dirichlet takes no generator); a set of one member gets weight 1."""
    S = valid.shape[-1]
    col = torch.arange(S, device=valid.device)
    conc = torch.where(col < first.unsqueeze(-1), torch.full_like(valid, alpha, dtype=torch.float),
                       torch.full_like(valid, alpha * decay, dtype=torch.float))
    conc = conc.masked_fill(~valid, 1.0).cpu()
    gamma = torch._standard_gamma(conc, generator=generator) if generator is not None else torch._standard_gamma(conc)
    gamma = gamma.to(valid.device).clamp(min=1e-30) * valid
    return gamma / gamma.sum(-1, keepdim=True)


class DNE(SubstitutionMixin, Method):
    name = "dne"
    Config = DNEConfig
    paper = "Zhou et al. 2021, DNE (ACL); TextDefender trainer/dne.py, utils/dne_utils.py"
    second_order = True

    def __init__(self, config: DNEConfig | None = None):
        super().__init__(config)
        self.generator: torch.Generator | None = None

    def setup(self, model, train_data=None, seed: int = 0) -> None:
        self.generator = torch.Generator().manual_seed(seed % (2**31))  # the Dirichlet draws
        super().setup(model, train_data, seed)

    def max_set_size(self) -> int | None:
        return int(self.config.max_set_size)

    def metrics(self) -> dict:
        return {**super().metrics(), "inference": "plain"}

    def sample(self, model, ids, mask, generator=None, masks=None):
        """(set ids, valid, weights <float>[B,T,S], rows <float>[B,T,S,D]): one Dirichlet hull sample
        (``masks``: the step's embedding dropout mask, ``SubstitutionMixin.hull_rows``)."""
        s_ids, valid, first, rows = self.hull_rows(model, ids, mask, masks,
                                                   grad=masks is not None and not self.config.detach_substitutes)
        w = dirichlet(valid, first, self.config.dir_alpha, self.config.dir_decay, generator)
        return s_ids, valid, w, rows

    def train_step(self, model, batch, backward) -> StepOutput:
        cfg, core = self.config, unwrap(model)
        ids, att, y = batch["input_ids"], batch["attention_mask"], batch["labels"]
        mask = core.perturbable_mask(ids, att)
        masks = DropoutMasks(ids.device)  # one embedding (and encoder) dropout mask for the K + 1 passes
        s_ids, valid, w0, rows = self.sample(core, ids, mask, self.generator, masks)
        movable = (valid[..., 1:].any(-1) & mask.bool()).unsqueeze(-1)  # (B, T, 1)
        logit = torch.log(w0 + 1e-6).masked_fill(~valid, float("-inf"))  # (B, T, S)
        # every pass reads the members through one leaf; their rows' gradient, summed over the passes
        # (already weighted and loss-scaled by ``backward``), goes through the table once at the end
        leaf = rows.detach().requires_grad_(rows.requires_grad)
        total, first_logits, logs = 0.0, None, {}
        for t in range(cfg.steps + 1):
            logit = (logit - logit.max(-1, keepdim=True).values).detach().requires_grad_()
            wts = masked_softmax(logit, valid)
            delta = ((wts.unsqueeze(-1) * leaf.float()).sum(2) - leaf[:, :, 0].float()) * movable  # (B, T, D)
            masks.replay()
            embeds = core.embed(ids)  # dropout(E[x]) = rows[:, :, 0]; re-read: the previous backward freed its graph
            out = model(inputs_embeds=embeds + delta.to(embeds.dtype), attention_mask=att)
            loss = classification_loss(out, y)
            scaled = loss if t == 0 else loss / cfg.steps  # L₀ + (1/K)·Σ L_t, the authors' weighting
            backward(scaled)  # ∂L_t/∂θ accumulates; logit.grad ∝ ∂L_t/∂ℓ_t (normalised below)
            total += scaled.item()
            if first_logits is None:
                first_logits = out.logits.detach()
            if t == cfg.steps:
                logs = {"adv_loss": loss.item(), "delta_norm": float(delta.detach().flatten(1).norm(dim=1).mean())}
                break
            g = torch.nan_to_num(logit.grad.detach(), nan=0.0) * valid  # (B, T, S)
            g = g / (g.norm(dim=-1, keepdim=True) + 1e-6)
            logit = logit.detach() + cfg.step_size * g
        if leaf.grad is not None:  # the K + 1 passes' ∂L/∂rows, summed, into the table in one pass
            torch.autograd.backward(rows, grad_tensors=leaf.grad.to(rows.dtype))
        return StepOutput(torch.tensor(total), first_logits, logs)
