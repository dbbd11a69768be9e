"""FreeLB (Zhu et al., ICLR 2020), as its reference code does it; the adversary CARL and RAR
(Qiu et al. 2021, §3.2–3.3) build on.

Update rule (reference ``run_glue_freelb.py``), for K ascent steps:

    δ₀ = U(−1, 1) ⊙ mask · γ / √(L·D)    (l2)      L real tokens, D embedding size
    δ₀ = U(−γ, γ) ⊙ mask                   (linf)    δ₀ is *not* projected into the ε-ball
    for t = 0..K−1:
        ℓ_t = L_C(f(E + δ_t), y) / K                   E re-read from the embedding layer each step
        ∇θ += ∂ℓ_t/∂θ                                  parameter gradients accumulate ("free")
        δ_{t+1} = Π_ε(δ_t + α · g_t / ‖g_t‖₂)          (l2)   g_t = ∂ℓ_t/∂δ_t
        δ_{t+1} = clip_[−ε,ε](δ_t + α · g_t / ‖g_t‖∞)  (linf)
    all K passes of one batch share one set of dropout masks (the reference's ``dp_masks``)

Norms run per example over the whole (T·D) perturbation. Π_ε rescales δ to ‖δ‖₂ ≤ ε when ε > 0
(ε = 0: unbounded, the setting the CARL paper's Table 1 uses for SST-2 and AG's News).

As in the reference, and stated because it matters when γ is large against ε:
- **δ₀ is not projected.** The random start is used as drawn; Π_ε first acts on δ₁. With l2 the
  start has ‖δ₀‖₂ ≤ γ (each of the L·D coordinates is at most γ/√(L·D)), so δ_t is in the ball
  for every t whenever γ ≤ ε; with γ > ε the first ascent step may start outside it.
- **L∞ steps are α·g/‖g‖∞, not α·sign(g).** The reference scales the gradient by its largest
  coordinate (per example), so only that coordinate moves by α and the rest move in proportion;
  sign steps (Madry et al.'s PGD, ``pgd.py``) move every coordinate by α.
- **One dropout mask per batch** (``--dropout-masks shared``, default): the reference threads the
  masks drawn on the first ascent step through the K − 1 later ones, so the K passes differ only
  by δ and g_t is the gradient of the same network. Here the global generator is replayed before
  each pass (``perturb.DropoutMasks``), which gives every dropout of the model (MiniLM's 0.1,
  the RNN's 0.5 on the embeddings and the head) the same masks on every step without changing
  the model. ``fresh`` draws new masks per step (for comparison; this code did so before the
  option existed).
- The RNN families apply their embedding dropout inside ``embed``: the recurrent layer reads
  dropout(E) + δ_t, with δ_t intact (see ``models/base.py``).

Choices where the reference and this code differ, or the papers are silent:
- ``mask`` excludes padding *and* structural tokens ([CLS]/[SEP]); the reference perturbs every
  attended position. Keeping them clean makes per-token norms comparable across families (an
  LSTM has no [CLS]) and matches what ``advviz inspect`` shows. [UNK] is perturbed (a word).
- The reference never includes the clean loss, which is a known reproduction problem;
  ``--clean-loss`` adds L_C(f(E), y) once per step (one extra forward/backward, same masks).
- As an *attack* (``perturb``) the K updates are all applied and δ_K is returned; parameter
  gradients are never touched (``torch.autograd.grad`` on δ only).

Subclasses (CARL, RAR) add terms to every ascent step's loss by overriding ``extra_loss``. The
extra term trains θ only: the ascent direction stays ∂L_C/∂δ (CARL paper Eq. 1), taken with
``torch.autograd.grad(..., retain_graph=True)`` before the backward pass (one extra backward to δ
on each non-final ascent step; FreeLB itself, with no extra term, is unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.base import ClassifierOutput
from ..config import hp
from .base import Method, MethodConfig, StepOutput, classification_loss, unwrap
from .perturb import DropoutMasks, masked, normalize, project


@dataclass(frozen=True)
class FreeLBConfig(MethodConfig):
    # CARL paper Table 1, SST-2 row: γ 0.6, α 0.1, ε 0, K 2 (AG's News: γ 0, α 0.01, ε 0, K 3)
    steps: int = hp(2, "ascent steps K")
    step_size: float = hp(0.1, "ascent step size α")
    epsilon: float = hp(0.0, "ε-ball radius (0: unbounded, FreeLB's ε=0)")
    init_mag: float = hp(0.6, "FreeLB initial magnitude γ")
    norm: str = hp("l2", "perturbation norm", choices=["l2", "linf"])
    clean_loss: bool = hp(False, "FreeLB: add the clean loss each step")
    dropout_masks: str = hp("shared", "FreeLB: one dropout mask per batch for all K ascent "
                            "steps (the reference's dp_masks) or fresh masks each step",
                            choices=["shared", "fresh"])

    def __post_init__(self):
        super().__post_init__()  # the documented maxima (limits.MAXIMA)
        if self.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {self.steps}")
        if self.step_size <= 0:
            raise ValueError(f"--step-size must be > 0, got {self.step_size}")
        if self.epsilon < 0 or self.init_mag < 0:
            raise ValueError("--epsilon and --init-mag must be >= 0")
        if self.norm not in ("l2", "linf"):
            raise ValueError(f"--norm must be l2 or linf, got {self.norm!r}")
        if self.dropout_masks not in ("shared", "fresh"):
            raise ValueError(f"--dropout-masks must be shared or fresh, got {self.dropout_masks!r}")


def freelb_step(delta: torch.Tensor, g: torch.Tensor, mask: torch.Tensor, cfg: "FreeLBConfig") -> torch.Tensor:
    """δ_{t+1} = Π_ε(δ_t + α·g/‖g‖_p), p = cfg.norm, the norm per example (reference, both norms)."""
    return project(delta.detach() + cfg.step_size * normalize(g, mask, cfg.norm), cfg.epsilon, cfg.norm, mask)


def freelb_init(embeds: torch.Tensor, mask: torch.Tensor, init_mag: float, norm: str,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """δ₀ (B,T,D): U(−1,1)·mask·γ/√(L·D) for l2, U(−γ,γ)·mask for linf; zeros when γ = 0."""
    if init_mag <= 0:
        return torch.zeros_like(embeds)
    u = torch.rand(embeds.shape, generator=generator, device="cpu", dtype=torch.float32)
    u = (2 * u - 1).to(embeds.device, embeds.dtype)  # U(-1, 1)
    u = masked(u, mask)
    if norm == "linf":
        return u * init_mag
    dims = mask.sum(1).clamp(min=1).to(embeds.dtype) * embeds.shape[-1]  # L·D per example
    return u * (init_mag / dims.sqrt()).view(-1, 1, 1)


class FreeLB(Method):
    name = "freelb"
    Config = FreeLBConfig
    is_attack = True
    paper = "Zhu et al. 2020, FreeLB; CARL paper Table 1 hyperparameters"

    def __init__(self, config: FreeLBConfig | None = None):
        super().__init__(config)
        self.generator: torch.Generator | None = None

    def setup(self, model, train_data=None, seed: int = 0) -> None:
        self.generator = torch.Generator().manual_seed(seed % (2**31))  # δ₀, reproducible from the run seed

    # -- hook for CARL / RAR ------------------------------------------------------------------
    def extra_loss(self, model, batch, adv_out: ClassifierOutput, step: int) -> tuple[torch.Tensor | None, dict]:
        """Added to L_C on each ascent step (before the 1/K scaling). FreeLB itself adds nothing."""
        return None, {}

    # -- training ------------------------------------------------------------------------------
    def train_step(self, model, batch, backward) -> StepOutput:
        cfg, core = self.config, unwrap(model)
        ids, att, y = batch["input_ids"], batch["attention_mask"], batch["labels"]
        mask = core.perturbable_mask(ids, att)
        masks = DropoutMasks(ids.device, cfg.dropout_masks == "shared")  # before the first pass draws any
        delta, total, logs, clean_logits = None, 0.0, {}, None
        if cfg.clean_loss:
            masks.replay()
            clean = model(inputs_embeds=core.embed(ids), attention_mask=att)
            lc = classification_loss(clean, y)
            backward(lc)
            total += lc.item()
            clean_logits = clean.logits.detach()
        for t in range(cfg.steps):
            masks.replay()
            embeds = core.embed(ids)  # dropout(E) for RNNs; re-read: backward freed the previous graph
            if delta is None:
                delta = freelb_init(embeds.detach(), mask, cfg.init_mag, cfg.norm, self.generator)
            delta.requires_grad_()
            out = model(inputs_embeds=embeds + delta, attention_mask=att)
            loss = classification_loss(out, y)
            extra, extra_logs = self.extra_loss(model, batch, out, t)
            g_c = None
            if extra is not None:
                if t < cfg.steps - 1:
                    # the inner max is over L_C only (CARL paper Eq. 1, 6, 7): ascend on ∂L_C/∂δ,
                    # not on the extra term's gradient, which only trains θ
                    (g_c,) = torch.autograd.grad(loss / cfg.steps, delta, retain_graph=True)
                loss = loss + extra
            loss = loss / cfg.steps
            backward(loss)  # accumulates ∂ℓ_t/∂θ and fills delta.grad
            total += loss.item()
            if clean_logits is None and t == 0:
                clean_logits = out.logits.detach()  # logits at δ₀ (≈ clean) for train accuracy
            for k, v in extra_logs.items():
                logs[k] = logs.get(k, 0.0) + v / cfg.steps
            if t == cfg.steps - 1:
                break
            delta = freelb_step(delta, delta.grad.detach() if g_c is None else g_c, mask, cfg)
        return StepOutput(torch.tensor(total), clean_logits, logs)

    # -- attack --------------------------------------------------------------------------------
    def perturb(self, model, batch, generator=None) -> torch.Tensor:
        cfg, core = self.config, unwrap(model)
        ids, att, y = batch["input_ids"], batch["attention_mask"], batch["labels"]
        mask = core.perturbable_mask(ids, att)
        embeds = core.embed(ids).detach()
        delta = freelb_init(embeds, mask, cfg.init_mag, cfg.norm, generator)
        for _ in range(cfg.steps):
            delta.requires_grad_()
            with torch.enable_grad():
                loss = classification_loss(model(inputs_embeds=embeds + delta, attention_mask=att), y)
                (g,) = torch.autograd.grad(loss, delta)
            delta = freelb_step(delta, g, mask, cfg)
        return delta.detach()
