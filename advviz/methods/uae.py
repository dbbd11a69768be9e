"""UAE: MINE-based unsupervised adversarial examples, the MinMax attack of Hsu, Chen, Chen & Yu
("Adversarial Examples for Unsupervised Machine Learning Models", 2021; reference code IBM/UAE),
in the embedding space of a text classifier.

The adversarial example keeps as much mutual information with the original as it can, measured
by MINE (``mine.py``: Donsker–Varadhan bound, statistics network T_Θ, shuffled pairs as the
marginal), while a label-free loss ℓ is pushed above its clean value:

    max_δ  I_Θ(E; E + δ)   s.t.  ℓ(E + δ) ≥ ℓ(E) + κ,   ‖δ‖ ≤ ε
    h(δ) = max(0, ℓ(E) + κ − ℓ(E + δ)) / κ                         relative constraint violation, per example
    J(δ; c) = −I_Θ(E; E + δ) + c · h(δ)                            the Lagrangian δ descends

alternating, for t = 0..K−1 (the reference's ``attack_batch`` loop):

    Θ ← Θ + n Adam steps on I_Θ(E; E + δ_t)                        (--mine-steps n, --mine-lr)
    s = ∇_δ I / ‖∇_δ I‖₂ − c · ∇_δ h / ‖∇_δ h‖₂                      each term normalised per example
    δ_{t+1} = Π_ε(δ_t + α · s / ‖s‖₂)             (l2; linf: α · sign(s))  per example
    c ← (1 − 0.1 / (t+1)^{1/4}) · c + 0.1 · h(δ_t),   c ≥ 0             (the reference's dual update)

δ₀ is a random start of size γ·ε (--init-mag γ; l2: a random direction, linf: U(−γε, γε)), c₀ =
--uae-c0 per example. Of the iterates δ₀..δ_K the one returned for each example is, as in the
reference, the feasible one (h = 0) with the largest I_Θ, else the one with the smallest h.

**The label-free loss ℓ** (--uae-loss auto picks it from the attacked model):
- ``reconstruction``, a ``rar`` / ``carl+rar`` checkpoint (UAE's data-reconstruction case): RAR's
  reconstruction loss (``rar.reconstruction_loss``: the head's cross-entropy at the perturbable
  tokens against the input ids), per example, on the token representations of E + δ.
- ``contrastive``, a ``carl`` checkpoint (UAE's contrastive case): CARL's contrastive loss
  (``carl.contrastive_logits`` + InfoNCE) with the adversarial representation as anchor, the
  example's clean representation as positive and the other examples' clean representations of the
  batch as negatives (SimCLR's in-batch negatives: no label, no memory bank; τ the checkpoint's);
  a batch of one example has no negatives and falls back to ``representation``.
- ``representation``, any other model: 1 − cos(f(E), f(E + δ)), f the sentence representation
  (``pooled``), whose clean value is 0.
No label is read: ``perturb`` never touches ``batch["labels"]``.

**As a training method** (``--method uae``: UAE examples as augmentation) the loss is

    L = L_C(E; labelled rows) + λ · mean_rows [ L_C(E + δ, y) on labelled rows,
                                                KL(p(·|E) ‖ p(·|E + δ)) on unlabeled rows ]

with p(·|E) held constant: a labelled UAE example keeps its label (the paper's augmentation);
an unlabeled one has none, so it is fitted to the clean prediction (``uses_unlabeled``).

Where the reference code, the paper and this code differ (each a choice made here):
- **The direction of the constraint and of MI.** The issue this implements (and the reference's
  *supervised* ``MINE_supervised``: loss c·max(0, real − other) − MI) keep MI *high* while the
  objective crosses a threshold. The reference's *unsupervised* scripts
  (``unsupervised_attack.py``, ``contrast_attack.py``) minimise c·max(0, ℓ(x+δ) − ℓ(x)) + MI, i.e.
  they look for an x + δ of *low* MI whose reconstruction / contrastive loss is *not above* the
  clean one. We follow the former: it is the one that makes an attack on a classifier.
- **κ.** ℓ(E + δ) ≥ ℓ(E) holds at δ = 0, so without a margin the maximiser of I is δ = 0 (for
  the reference's supervised loss the constraint "misclassified" is not met at δ = 0). --uae-margin
  κ (in ℓ's units; 1 − cos for the representation loss) makes the constraint bind; the reference
  has none (its CONFIDENCE is 0). κ = 0.01: on the GloVe LSTM at its ε 0.4 even the constraint
  alone (c₀ = 100) meets κ = 0.05 for only 30 % of 512 dev sentences in K = 5 steps (κ 0.01 at c₀ 1: 51 %; docs/results.md §8).
- **Units.** The reference descends the raw Lagrangian, whose balance depends on the units of its
  loss (pixel sums, logit margins: h of order 1–100, so c grows). Here MI is in nats of an
  unbounded estimate and ℓ may be 1 − cos (h ≤ κ ≈ 0.01): the dual update would drive c to ~0
  and MI alone would steer δ (measured: no training batch feasible). So h is the violation
  relative to κ (1 = fully violated, the update then settles c near (t+1)^{1/4}), and the two
  gradients are normalised per example before c weighs them: c weighs directions, not units.
- **What MI is estimated over**: each example's D embedding channels as samples, as the
  reference's conv mode takes the channels of the model's first layer (``mine.py``).
- **Steps.** The reference steps δ by plain gradient descent (lr 0.01) with the L∞ box
  ``clip(δ, −ε, ε)`` and runs 40 (autoencoders) to 10,000 (SimCLR) iterations with 20 (1 in the
  supervised script) Adam steps of lr 1.5·10⁻⁵ for MINE per iteration, c₀ = 10⁻³. Embedding
  units differ per model, so δ takes normalised steps of size α (2.5·ε/K, as PGD here) in an l2
  ball (linf available), with K = 5 iterations, 5 MINE steps at lr 10⁻³ (each on a minibatch of
  16 examples) and c₀ = 1 by default, and a fresh network (an attack's) first takes 40 steps on
  (E, E + δ₀): few enough forward passes to be a training adversary. The UAE paper's ε are pixel
  L∞ budgets; ε here is the AdvT-Text sequence norm (5, the paper value VAT and AdvT share),
  scaled per family by ``--preset family`` as theirs.
- **δ₀.** The reference starts at U(−ε, ε) (the whole box); γ = --init-mag scales the start
  (the representation loss has zero gradient at δ = 0, so some start is needed).
- **The statistics network** across calls: as an attack a fresh network is trained for each call
  (the reference re-initialises MINE for each attacked image), seeded from the caller's
  generator; as a training method one network persists through the run (trained on every batch)
  and c restarts at c₀ for every batch (under N processes each process trains its own network on
  its share of the batch). The network is the method's, not the model's: it is **not
  checkpointed** (no ``extra_modules``; an attack on a saved model trains its own), but its
  weights and Adam moments are in ``state_dict`` so a resumed run continues bit-identically.
- **Dropout** (training): ``embed`` is called once, and every pass of the search replays the
  clean pass's dropout masks (``perturb.DropoutMasks``), so ℓ(E + δ) − ℓ(E) measures δ, not a new
  mask; the adversarial training pass then draws new masks, as the other adversaries' do.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import hp
from ..errors import AdvvizError
from .base import Method, MethodConfig, StepOutput, kl_with_logits, labeled_rows, supervised_loss, unwrap
from .carl import contrastive_logits
from .mine import MINE, channel_samples, clean_scale
from .perturb import DropoutMasks, ascent_direction, masked, normalize_l2, project
from .rar import load_rar_head

LOSSES = ("auto", "representation", "reconstruction", "contrastive")
DEFAULT_TAU = 0.07  # CARL's τ (carl.py), for a contrastive loss on a model that records none
MINE_HIDDEN = 32  # units of the statistics network's hidden layer
MINE_BATCH = 16  # examples (each D samples) per Adam step of the statistics network
MINE_WARMUP = 40  # Adam steps a fresh network (an attack's) takes on (E, E + δ₀) before the first δ step


@dataclass(frozen=True)
class UAEConfig(MethodConfig):
    epsilon: float = hp(5.0, "perturbation size ε")
    steps: int = hp(5, "UAE: alternating MINE / δ iterations K (the reference: 40 to 10,000)")
    step_size: float = hp(0.0, "δ step size α (uae: 0 means 2.5·ε/K)")
    init_mag: float = hp(0.5, "UAE: random start δ₀ of size γ·ε (the reference: the whole box, γ = 1)")
    norm: str = hp("l2", "perturbation norm", choices=["l2", "linf"])
    mine_steps: int = hp(5, "UAE: Adam steps of the MINE statistics network per iteration (the reference: 20)")
    mine_lr: float = hp(1e-3, "UAE: learning rate of the MINE statistics network (the reference: 1.5e-5)")
    uae_margin: float = hp(0.01, "UAE: κ in the constraint ℓ(E+δ) ≥ ℓ(E) + κ (in the loss's units)")
    uae_c0: float = hp(1.0, "UAE: initial multiplier c of the constraint (the reference: 0.001)")
    uae_loss: str = hp("auto", "UAE: label-free loss ℓ; auto: reconstruction for a RAR head, contrastive "
                       "for CARL, else representation (1 − cos)", choices=list(LOSSES))
    adv_weight: float = hp(1.0, "λ in L + λ·L(E+δ) (uae: cross-entropy on labelled rows, KL to the "
                                "clean prediction on unlabeled ones)")

    def __post_init__(self):
        super().__post_init__()  # the documented maxima (limits.MAXIMA)
        if not self.epsilon > 0:
            raise ValueError(f"--epsilon must be > 0, got {self.epsilon}")
        for name, lo in (("steps", 1), ("mine_steps", 0)):
            if getattr(self, name) < lo:
                raise ValueError(f"--{name.replace('_', '-')} must be >= {lo}, got {getattr(self, name)}")
        if self.step_size < 0 or self.init_mag < 0:
            raise ValueError("--step-size and --init-mag must be >= 0")
        if self.norm not in ("l2", "linf"):
            raise ValueError(f"--norm must be l2 or linf, got {self.norm!r}")
        if not self.mine_lr > 0:
            raise ValueError(f"--mine-lr must be > 0, got {self.mine_lr}")
        if self.uae_margin < 0 or self.uae_c0 < 0:
            raise ValueError("--uae-margin and --uae-c0 must be >= 0")
        if self.uae_loss not in LOSSES:
            raise ValueError(f"--uae-loss must be one of {', '.join(LOSSES)}, got {self.uae_loss!r}")
        if self.adv_weight < 0:
            raise ValueError(f"--adv-weight must be >= 0, got {self.adv_weight}")

    @property
    def alpha(self) -> float:
        return self.step_size if self.step_size > 0 else 2.5 * self.epsilon / self.steps


def dual_update(c: torch.Tensor, h: torch.Tensor, t: int) -> torch.Tensor:
    """The reference's multiplier update after iteration t (0-based): (1 − 0.1/(t+1)^¼)·c + 0.1·h, ≥ 0."""
    return ((1 - 0.1 / (t + 1) ** 0.25) * c + 0.1 * h).clamp(min=0.0)


def random_start(embeds: torch.Tensor, mask: torch.Tensor, size: float, norm: str,
                 generator: torch.Generator | None) -> torch.Tensor:
    """δ₀ <float>[B,T,D]: l2 a random direction of norm ``size`` per example; linf U(−size, size)."""
    if size <= 0:
        return torch.zeros_like(embeds)
    if norm == "linf":
        u = torch.rand(embeds.shape, generator=generator, dtype=torch.float32).to(embeds.device, embeds.dtype)
        return masked((2 * u - 1) * size, mask)
    d = torch.randn(embeds.shape, generator=generator, dtype=torch.float32).to(embeds.device, embeds.dtype)
    return size * normalize_l2(d, mask)


def per_example_reconstruction(head, tokens: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """<float>[B] RAR's reconstruction loss (``rar.reconstruction_loss``) of each example: the mean
    cross-entropy of head(tokens) against the input ids over its perturbable tokens."""
    sel = mask.bool()
    rows = sel.nonzero()[:, 0]  # (N,) the example of each perturbable token
    ce = F.cross_entropy(head(tokens[sel]).float(), ids[sel], reduction="none")  # (N,), logits (N, V) only
    total = torch.zeros(ids.shape[0], dtype=ce.dtype, device=ce.device).index_add(0, rows, ce)
    return total / sel.sum(1).clamp(min=1).to(ce.dtype)


def per_example_contrastive(z_adv: torch.Tensor, z_clean: torch.Tensor, tau: float) -> torch.Tensor:
    """<float>[B] CARL's contrastive loss (``carl.contrastive_logits``, InfoNCE) per example: anchor
    the adversarial representation, positive the example's clean one, negatives the other
    examples' clean ones (all L2-normalised)."""
    B = z_adv.shape[0]
    others = torch.stack([torch.cat([z_clean[:i], z_clean[i + 1:]]) for i in range(B)])  # (B, B−1, d)
    pos, neg = contrastive_logits(z_adv, z_clean, others, tau)
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1)
    return F.cross_entropy(logits, torch.zeros(B, dtype=torch.long, device=logits.device), reduction="none")


class UAE(Method):
    name = "uae"
    Config = UAEConfig
    is_attack = True
    uses_unlabeled = True
    paper = "Hsu et al. 2021 (UAE, MINE-based MinMax); Belghazi et al. 2018 (MINE)"

    def __init__(self, config: UAEConfig | None = None):
        super().__init__(config)
        self.generator = torch.Generator().manual_seed(0)
        self.mine: MINE | None = None
        self._heads = weakref.WeakKeyDictionary()  # classifier -> its RAR head, rebuilt once
        self.last: dict = {}  # the last search's per-example facts (tests, logs)

    # -- what ℓ is -------------------------------------------------------------------------------
    def loss_kind(self, core) -> str:
        """The label-free loss for this classifier (see the module docstring)."""
        kind = self.config.uae_loss
        trained = getattr(core, "trained_with", None) or {}
        has_head = "rar" in (getattr(core, "extra_state", None) or {})
        if kind == "auto":
            return "reconstruction" if has_head else "contrastive" if trained.get("name") == "carl" else "representation"
        if kind == "reconstruction" and not has_head:
            raise AdvvizError("uae: --uae-loss reconstruction needs a RAR head: attack a checkpoint trained "
                              "with --method rar or carl+rar")
        return kind

    def _head(self, core):
        if core not in self._heads:
            layout = (getattr(core, "trained_with", None) or {}).get("rar_head", "ln-first")
            self._heads[core] = load_rar_head(core, core.extra_state["rar"], layout)
        return self._heads[core]

    def _tau(self, core) -> float:
        trained = getattr(core, "trained_with", None) or {}
        tau = trained.get("tau")
        return float(tau) if isinstance(tau, (int, float)) and tau > 0 else DEFAULT_TAU

    def _loss(self, kind, core, out, ids, mask, ref) -> torch.Tensor:
        """<float>[B] ℓ at the pass ``out``; ``ref`` holds the clean pass's detached facts."""
        if kind == "reconstruction":
            return per_example_reconstruction(self._head(core), out.tokens, ids, mask)
        z = F.normalize(out.pooled.float(), dim=-1)
        if kind == "contrastive":
            return per_example_contrastive(z, ref["z"], self._tau(core))
        return 1.0 - (z * ref["z"]).sum(-1)

    # -- the MinMax search -------------------------------------------------------------------------
    def search(self, model, ids, embeds, att, mask, mine: MINE, generator, masks: DropoutMasks,
               warmup: int = 0) -> torch.Tensor:
        """δ <float>[B,T,D] for the (detached) embeddings ``embeds``; ``masks`` is replayed before
        every pass; a fresh ``mine`` first takes ``warmup`` steps. Fills ``self.last`` (the clean
        loss, the returned δ's loss, MI and feasibility)."""
        cfg, core = self.config, unwrap(model)
        kind = self.loss_kind(core)
        B = ids.shape[0]
        if kind == "contrastive" and B < 2:
            kind = "representation"  # no other example to contrast with
        embeds = embeds.detach()
        scale = clean_scale(embeds, mask)  # (B,)
        x = channel_samples(embeds, mask, scale)  # (B, D, T)
        with torch.enable_grad():
            masks.replay()
            with torch.no_grad():
                clean = model(inputs_embeds=embeds, attention_mask=att)
            ref = {"z": F.normalize(clean.pooled.float(), dim=-1).detach()}
            loss0 = self._loss(kind, core, clean, ids, mask, ref).detach()  # (B,) ℓ(E)
            target = loss0 + cfg.uae_margin
            violation_unit = cfg.uae_margin if cfg.uae_margin > 0 else 1.0
            c = torch.full((B,), float(cfg.uae_c0), device=embeds.device)
            delta = project(random_start(embeds, mask, cfg.init_mag * cfg.epsilon, cfg.norm, generator),
                            cfg.epsilon, cfg.norm, mask)
            best = delta.clone()
            best_mi = torch.full((B,), float("-inf"), device=embeds.device)
            best_h = torch.full((B,), float("inf"), device=embeds.device)
            best_loss = loss0.clone()
            for t in range(cfg.steps + 1):
                d = delta.detach().requires_grad_()
                y = channel_samples(embeds + d, mask, scale)  # (B, D, T)
                n = cfg.mine_steps + (warmup if t == 0 else 0)
                if n:
                    mine.train(x, y, mask, n, generator, MINE_BATCH)
                mi = mine.estimate(x, y, mask, generator)  # (B,)
                masks.replay()
                out = model(inputs_embeds=embeds + d, attention_mask=att)
                loss = self._loss(kind, core, out, ids, mask, ref)  # (B,)
                h = F.relu(target - loss) / violation_unit  # (B,) relative violation
                # keep the best iterate: feasible with the largest MI, else the smallest violation
                feasible = h.detach() <= 0
                better = torch.where(feasible, (best_h > 0) | (mi.detach() > best_mi), (best_h > 0) & (h.detach() < best_h))
                best = torch.where(better.view(-1, 1, 1), d.detach(), best)
                best_mi = torch.where(better, mi.detach(), best_mi)
                best_h = torch.where(better, h.detach(), best_h)
                best_loss = torch.where(better, loss.detach(), best_loss)
                if t == cfg.steps:
                    break
                # descend J = −I + c·h with each term's gradient normalised per example, so c weighs
                # directions whatever the units of MI (nats) and of ℓ
                (g_mi,) = torch.autograd.grad(mi.sum(), d, retain_graph=True)
                (g_h,) = torch.autograd.grad(h.sum(), d)
                step = normalize_l2(g_mi, mask) - c.view(-1, 1, 1) * normalize_l2(g_h, mask)
                delta = project(d.detach() + cfg.alpha * ascent_direction(step, mask, cfg.norm), cfg.epsilon,
                                cfg.norm, mask)
                c = dual_update(c, h.detach(), t)
        self.last = {"loss_kind": kind, "clean_loss": loss0, "adv_loss": best_loss, "target": target,
                     "mi": best_mi, "feasible": best_h <= 0, "multiplier": c}
        return masked(best, mask).detach()

    # -- method contract -----------------------------------------------------------------------
    def setup(self, model, train_data=None, seed: int = 0) -> None:
        core = unwrap(model)
        self.loss_kind(core)  # refuses a loss the model cannot give before training starts
        self.generator = torch.Generator().manual_seed(seed % (2**31))
        self.mine = MINE(MINE_HIDDEN, self.config.mine_lr, seed=seed % (2**31) + 1, device=core.device)

    def train_step(self, model, batch, backward) -> StepOutput:
        cfg, core = self.config, unwrap(model)
        if self.mine is None:
            self.setup(model)
        ids, att = batch["input_ids"], batch["attention_mask"]
        mask = core.perturbable_mask(ids, att)  # (B, T)
        embeds = core.embed(ids)  # (B, T, D) dropout(E), attached
        masks = DropoutMasks(ids.device, model.training)  # the clean pass's masks, replayed by the search
        out = model(inputs_embeds=embeds, attention_mask=att)
        clean = supervised_loss(out.logits, batch)
        delta = self.search(model, ids, embeds.detach(), att, mask, self.mine, self.generator, masks)
        adv = model(inputs_embeds=embeds + delta, attention_mask=att)  # new dropout masks
        lab = labeled_rows(batch)
        kl = kl_with_logits(out.logits.detach(), adv.logits)  # (B,)
        ce = F.cross_entropy(adv.logits.float(), batch["labels"].masked_fill(~lab, 0), reduction="none")
        adv_loss = torch.where(lab, ce, kl).mean()
        loss = clean + cfg.adv_weight * adv_loss
        backward(loss)
        last = self.last
        logs = {"clean_loss": clean.item(), "adv_loss": adv_loss.item(),
                "delta_norm": float(delta.flatten(1).norm(dim=1).mean()),
                "uae_mi": float(last["mi"].mean()), "uae_feasible": float(last["feasible"].float().mean())}
        return StepOutput(loss.detach(), out.logits.detach(), logs)

    def perturb(self, model, batch, generator=None) -> torch.Tensor:
        core = unwrap(model)
        ids, att = batch["input_ids"], batch["attention_mask"]  # labels are never read
        mask = core.perturbable_mask(ids, att)
        embeds = core.embed(ids).detach()
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        mine = MINE(MINE_HIDDEN, self.config.mine_lr, seed=seed, device=embeds.device)  # fresh, as the reference
        return self.search(model, ids, embeds, att, mask, mine, gen, DropoutMasks(ids.device, core.training),
                           warmup=MINE_WARMUP)

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = super().state_dict()
        if self.mine is not None:
            state.update(self.mine.state_dict())
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        super().load_state_dict(state)
        if self.mine is not None:
            self.mine.load_state_dict(state)
