"""CARL: Contrastive Adversarial Representation Learning (Qiu et al. 2021, §3.2, Eqs. 1–6).

FreeLB (``freelb.py``) produces the adversarial embeddings E + δ_t; on top of its classification
loss L_C, CARL adds the contrastive loss L_D = L_D^o + L_D^a (Eqs. 2–3), so one step minimises
(L_C + L_D) with δ chosen to maximise L_C only (Eq. 6; see ``FreeLB.extra_loss``):

    R      = f_enc(E)          sentence representation: pooled output ([CLS] final hidden state
    R_adv  = f_enc(E + δ_t)    for transformers, final state for LSTM/GRU), L2-normalised
    L_D^a  = −log h(R_adv, P_a)    / [h(R_adv, P_a)   + Σ_j h(R_adv, B_orig[n_j])]   anchor R_adv
    L_D^o  = −log h(R, P_o)        / [h(R, P_o)       + Σ_j h(R, B_adv[n_j])]        anchor R
             positives P_a = B_orig[i], P_o = B_adv[i] (default; or R, R_adv: --carl-positive live)
    h(x₁, x₂) = exp(x₁·x₂ / τ)     (Eq. 4), τ = 0.07
    B[i] ← M·B[i] + (1−M)·R_i      (Eq. 5), M = 0.5, for B_orig (R) and B_adv (R_adv)

with m negatives n_j per example drawn from the training examples whose label differs from the
anchor's, read from the memory banks (``advviz.methods.memory_bank``). ``--carl-loss nce`` (default, as
in the paper) replaces the softmax by Noise-Contrastive Estimation as in Wu et al. (2018) and
CMC (Tian et al. 2020); ``--carl-loss infonce`` computes the softmax above exactly.

Every choice, explicit (the paper is silent on each unless a section is cited):

- **No projection head.** h scores R itself, L2-normalised. The paper's Table 7 gives CARL exactly
  FreeLB's parameter count (11,685,122 for both), so its h has no parameters; and τ = 0.07 only
  makes sense for dot products bounded in [−1, 1], i.e. on the unit sphere (as in Wu et al. and
  CMC, where the embedding is L2-normalised before the bank). CARL therefore adds no trainable
  parameters and no ``extra_modules``.
- **Denominator.** Eq. 2 as printed sums h over the negatives only; here the positive is also in
  the denominator (the InfoNCE form of Tian et al. 2020, whose objective the paper adapts), so
  L_D ≥ 0 and is minimal when R_adv = R and the negatives are far.
- **Where the positive comes from** (``--carl-positive``). ``bank`` (default): as in the code the
  paper adapts (Tian et al.'s CRD/CMC ``ContrastMemory``, whose defaults CARL reports verbatim:
  τ 0.07, M 0.5, m ≈ 16k, NCE), the anchor's positive is *its own row in the other view's bank*:
  L_D^a scores R_adv against B_orig[i], L_D^o scores R against B_adv[i]; anchors carry the
  gradient, bank rows do not. ``live``: Eq. 2 read literally, the positive is the other view
  computed in this step (R for L_D^a, R_adv for L_D^o), with gradient through both. Measured here
  (lstm/sst2-sent, 3000 examples, warm start at 0.757 dev accuracy): ``live`` collapses to chance
  within one epoch, because the banks are stale (a row is refreshed once per epoch) and moving
  *every* representation, of both classes, to a new direction far from the old rows lowers L_D
  while R = R_adv holds trivially; with the positive read from the example's own row that global
  drift costs as much as it gains.
  Negatives' representations are always bank rows, without gradient.
- **Which anchor reads which bank**: L_D^a (anchor R_adv) contrasts with negatives' *original*
  representations (B_orig); L_D^o (anchor R) with their *adversarial* ones (B_adv), as Eq. 2 says.
- **Per ascent step.** L_D is added on each of FreeLB's K ascent steps with R_adv = f(E + δ_t)
  (weighted 1/K like L_C), so each of FreeLB's K "virtual" adversarial batches is contrasted.
  R = f(E) does not depend on δ and θ does not change within an optimiser step, so it is computed
  by **one** clean forward pass per step (on the first ascent step, with FreeLB's shared dropout
  masks) and back-propagated once, on the last step: the earlier steps score a detached copy of R
  and their gradient with respect to it is handed to R's graph then. The θ-gradient equals that of
  recomputing R on every step (tested with dropout off), at K + 1 passes instead of 2K. One
  negative sample is drawn per optimiser step and shared by its K ascent steps.
- **Bank update** (Eq. 5) happens once per optimiser step, after the last ascent step, with that
  step's R (clean) and R_adv (the final δ), L2-normalised and detached (see ``memory_bank``).
- **Warm start** (§3.2, Table 3). L_D is off for the first S optimiser steps; the loss (and the
  gradients) are then exactly FreeLB's. When S steps are done, one pass over the whole training
  set initialises both banks: B_orig[i] = R_i and B_adv[i] = R_adv,i, with δ from FreeLB used as an
  attack with the training hyperparameters (K, α, γ, ε), in eval mode (no dropout), and no
  parameter gradients. S is given relative to the run (``--carl-start``): ``33%`` (default) of the
  run's optimiser steps, ``1ep`` whole epochs, ``217`` an explicit step count, or ``paper`` for
  Table 3's value of the data set (sst2 6315, agnews 7750). The paper states the rule — L_D starts
  "after the model is about to be stable" — and gives step counts only for its four data sets at
  its batch sizes (SST-2: 6315 = 3 epochs of 67,349 at batch 32; Yelp-P: 5625 = 3 epochs; AG's
  News: 7750 ≈ 2 epochs), so a fixed count is wrong for any other data set or run length: 6315 on
  sst2-sent (651 steps in 3 epochs) left L_D off for the whole run and saved FreeLB as CARL. A
  share of the run is true to the rule on any data set: a fine-tuned encoder or a GloVe LSTM is
  past its steep first descent after about a third of a 3-epoch run (one epoch), and two thirds
  of the run still train with L_D. 33 % is also the paper's own share if CARL ran FreeLB's ALBERT
  SST-2 schedule (FreeLB's ``launch/run_glue.sh``: 20,935 steps at batch 32; 6315 / 20,935 = 30 %).
  **Deviation, recurrent families**: ``--preset family`` (the default) starts L_D at ``67%`` on
  lstm/bigru. Measured on lstm/sst2-sent, 3 epochs, 3 seeds (docs/results.md §9,
  ``benchmarks/carl_ablation.sh``): at 33 % CARL's dev accuracy is 73.1 ± 0.7 against FreeLB's
  77.0 ± 0.3; at 67 % it is 76.0 ± 0.4, and it keeps CARL's whole gain under k-PGD at ε 1 (0.399 vs
  0.402 at 33 %, FreeLB 0.354) and most of its representation stability (cos(R, R_adv) at ε 1:
  0.761 vs 0.892, FreeLB 0.394). τ 0.5 (74.3 ± 1.2) and exact InfoNCE instead of NCE (73.0 ± 0.9)
  do not explain the cost; λ_D 0.1 recovers less and less reliably (75.2 ± 1.2): the accuracy cost
  grows with how long L_D shapes the model. Transformers keep 33 % (not measured at this scale),
  and ``--preset paper`` gives 33 % everywhere. The resolved step is checked before training starts
  (``plan``): a start that leaves L_D off for the whole run is refused. Each checkpoint records
  ``metrics["carl"]``: the resolved start, the step at which the banks were filled, and how many
  optimiser steps L_D shaped (``ld_steps``).
- **m**: ``--negatives 0`` (default) scales the paper's SST-2 ratio to the data set:
  m = round(16000 · N / 67349), at least 1 and at most 16000; any positive value is used as is.
  Negatives are sampled with replacement, uniformly over the different-label pool.
- **NCE** (Wu et al. 2018, §3.2; CMC's ``NCECriterion``): with P(i|v) = exp(v·f_i/τ)/Z(v) and
  uniform noise P_n = 1/|pool|, P(D=1|i,v) = P(i|v) / (P(i|v) + m·P_n) and
        L = −log P(D=1 | positive) − Σ_j log(1 − P(D=1 | negative j)),
  averaged over the batch, computed in log space (no overflow for small τ).
  Z(v) = Σ_{i∈pool} exp(v·f_i/τ) is estimated by Monte Carlo from the anchor's own m negatives,
  Ẑ(v) = |pool| · mean_j exp(v·f_j/τ), *on every step, per anchor, without gradient*. Wu et al. and
  CMC instead fix one constant Z from the first batch; that assumes features spread over the
  sphere (their encoders start random). CARL's banks are filled from a warm-started encoder whose
  representations are concentrated (pairwise cosines ≈ 0.9), so a Z frozen then caps
  P(D=1|positive) far below m·P_n: the positive term becomes a constant floor, the negatives'
  gradient vanishes, and the only gradient left pulls R_adv onto R, which a constant encoder
  satisfies. Observed here with a fixed Z: lstm/sst2-sent fell from 0.726 dev accuracy at
  ``--carl-start`` to 0.509 (constant predictions, dev loss ln 2) one epoch later.
  **What this NCE reduces to.** With Ẑ(v) = |pool|·mean_j e^{s_j} (s_j = v·f_j/τ, detached) and
  m·P_n = m/|pool|, the factors cancel: m·P_n·Ẑ(v) = Σ_j e^{s_j} =: S, so
        −log P(D=1|pos) = −log e^{s⁺}/(e^{s⁺} + S),   −log P(D=0|neg_j) = log(1 + e^{s_j}/S)
  with S held constant in the gradient. P_n, m and |pool| drop out: the loss is a contrastive
  loss with a fixed (detached) denominator, the positive term InfoNCE's with a stop-gradient on
  the negatives' sum, plus Σ_j log(1 + e^{s_j}/S), which pushes each negative's score down in
  proportion to its share of S. ``--carl-loss infonce`` lets the gradient flow through the
  denominator.
- **Randomness**: negatives and the bank-initialisation attack draw from their own
  ``torch.Generator`` s, seeded from the run seed, so a run is reproducible.
- **Distributed**: the banks stay global. At the bank update every process all-gathers the
  batch's example ids, R and R_adv from every process (``distributed.gather_rows``) and applies
  all rows, so the banks are equal on every rank and equal to a one-process run's over the same
  global batch; negatives are then read from the full bank on each rank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..distributed import gather_rows
from ..errors import AdvvizError
from .memory_bank import MemoryBank, NegativeSampler
from ..config import hp
from .base import unwrap
from .freelb import FreeLB, FreeLBConfig

PAPER_NEGATIVES, PAPER_SST2_TRAIN = 16000, 67349  # §4.3: m = 16,000 on SST-2 (67,349 examples)


@dataclass(frozen=True)
class CARLConfig(FreeLBConfig):
    tau: float = hp(0.07, "CARL temperature τ of h(x1,x2)=exp(x1·x2/τ) on unit vectors (Eq. 4)")
    bank_momentum: float = hp(0.5, "CARL memory-bank momentum M (Eq. 5)")
    negatives: int = hp(0, "CARL negatives m per example (0: 16000·N/67349, the paper's "
                                           "SST-2 ratio)")
    carl_start: str = hp("33%", "CARL warm start before L_D is on and the banks are filled: "
                         "P% of the run's optimiser steps, Nep epochs, N steps, or 'paper' (Table 3: sst2 "
                         "6315, agnews 7750)")
    carl_loss: str = hp("nce", "CARL: NCE approximation (Wu et al. 2018) or exact InfoNCE",
                        choices=["nce", "infonce"])
    carl_weight: float = hp(1.0, "CARL: weight λ_D of L_D in L_C + λ_D·L_D (the paper: 1)")
    carl_positive: str = hp("bank", "CARL: the positive is the other view's bank row of the "
                            "same example (CRD/CMC) or the live representation (Eq. 2 read literally)",
                            choices=["bank", "live"])

    def __post_init__(self):
        super().__post_init__()
        if not self.tau > 0:
            raise ValueError(f"--tau must be > 0, got {self.tau}")
        if not 0 <= self.bank_momentum < 1:
            raise ValueError(f"--bank-momentum must be in [0, 1), got {self.bank_momentum}")
        if self.negatives < 0:
            raise ValueError(f"--negatives must be >= 0 (0: automatic), got {self.negatives}")
        object.__setattr__(self, "carl_start", str(self.carl_start).strip())  # 217 and "217" alike
        parse_carl_start(self.carl_start)
        if not self.carl_weight >= 0:
            raise ValueError(f"--carl-weight must be >= 0, got {self.carl_weight}")
        if self.carl_loss not in ("nce", "infonce"):
            raise ValueError(f"--carl-loss must be nce or infonce, got {self.carl_loss!r}")
        if self.carl_positive not in ("bank", "live"):
            raise ValueError(f"--carl-positive must be bank or live, got {self.carl_positive!r}")


PAPER_CARL_START = {"sst2": 6315, "agnews": 7750}  # Table 3 (Yahoo! 7200 and Yelp-P 5625: not shipped here)
CARL_START_FORMS = "P% (share of the run's optimiser steps), Nep (epochs), N (steps) or 'paper'"


def parse_carl_start(spec: str) -> tuple[str, float]:
    """``"33%"`` -> ("share", 0.33), ``"1ep"`` -> ("epochs", 1.0), ``"217"`` -> ("steps", 217),
    ``"paper"`` -> ("paper", 0); anything else is a ValueError naming the forms."""
    s = str(spec).strip().lower()
    try:
        if s == "paper":
            return "paper", 0.0
        if s.endswith("%"):
            v = float(s[:-1])
            if 0 <= v < 100:
                return "share", v / 100
        elif s.endswith("ep"):
            v = float(s[:-2])
            if v >= 0 and math.isfinite(v):
                return "epochs", v
        else:
            v = int(s)
            if v >= 0:
                return "steps", float(v)
    except ValueError:
        pass
    raise ValueError(f"--carl-start must be {CARL_START_FORMS}, e.g. 33%, 1ep or 217; got {spec!r}")


def resolve_carl_start(spec: str, total_steps: int, steps_per_epoch: int, dataset: str | None = None) -> int:
    """The optimiser step after which L_D is on, for a run of ``total_steps`` steps."""
    kind, v = parse_carl_start(spec)
    if kind == "share":
        return int(math.floor(v * total_steps))
    if kind == "epochs":
        return int(round(v * steps_per_epoch))
    if kind == "paper":
        if dataset not in PAPER_CARL_START:
            raise AdvvizError(f"--carl-start paper: the paper gives a warm start only for "
                              f"{', '.join(PAPER_CARL_START)} among the data sets here (not {dataset!r}); "
                              f"give {CARL_START_FORMS}")
        return PAPER_CARL_START[dataset]
    return int(v)


def ld_status(method: dict | None, metrics: dict | None) -> dict | None:
    """How much a saved CARL / CARL+RAR checkpoint trained with L_D, from its config's ``method``
    and its ``metrics.json``: ``{"ld_steps": int | None, "note": str}``; None for other methods.
    Checkpoints written before ``metrics["carl"]`` existed are judged from the recorded integer
    ``carl_start`` against the step the checkpoint was saved at."""
    method, metrics = method or {}, metrics or {}
    if method.get("name") not in ("carl", "carl+rar"):
        return None
    carl = metrics.get("carl") if isinstance(metrics.get("carl"), dict) else None
    n = carl.get("ld_steps") if carl else None
    if n is None:
        start, step = method.get("carl_start"), metrics.get("steps")
        try:
            n = max(0, int(step) - int(start))
        except (TypeError, ValueError):
            n = None
    if n == 0:
        return {"ld_steps": 0, "note": "L_D never active — equivalent to FreeLB"}
    return {"ld_steps": n, "note": "" if n is not None else "L_D steps unknown"}


def default_negatives(num_train: int) -> int:
    """The paper's SST-2 ratio m/N = 16000/67349, scaled to N, in [1, 16000]."""
    return int(min(PAPER_NEGATIVES, max(1, round(PAPER_NEGATIVES * num_train / PAPER_SST2_TRAIN))))


# -- the two contrastive estimators ---------------------------------------------------------------


def contrastive_logits(anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
                       tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """log h: (<float>[B] anchor·positive/τ, <float>[B,m] anchor·negative_j/τ).

    anchor, positive <float>[B,d] and negatives <float>[B,m,d] are expected L2-normalised."""
    pos = (anchor * positive).sum(-1) / tau
    neg = torch.einsum("bd,bmd->bm", anchor, negatives) / tau
    return pos, neg


def infonce_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """−log e^{pos} / (e^{pos} + Σ_j e^{neg_j}), mean over B (Eq. 2 with the positive in the
    denominator)."""
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long, device=pos.device))


def nce_log_z(neg: torch.Tensor, pool_size: torch.Tensor) -> torch.Tensor:
    """<float>[B] log Ẑ(v) = log(|pool| · mean_j exp(neg_j)), detached: the Monte Carlo estimate of
    each anchor's partition function Σ_{i∈pool} exp(v·f_i/τ) from its m sampled negatives."""
    neg = neg.detach().float()
    return (torch.logsumexp(neg, dim=1) - math.log(neg.shape[1])
            + torch.log(pool_size.to(neg.device, neg.dtype)))


def nce_loss(pos: torch.Tensor, neg: torch.Tensor, log_z: torch.Tensor | float, pool_size: torch.Tensor) -> torch.Tensor:
    """NCE (Wu et al. 2018, Eqs. 5–7): −log P(D=1|pos) − Σ_j log P(D=0|neg_j), mean over B.

    pos <float>[B] and neg <float>[B,m] are log h; P = exp(log h − log Z) with log Z a float or
    <float>[B] (``nce_log_z``); P_n = 1/pool_size[B]."""
    m = neg.shape[1]
    log_mpn = (math.log(m) - torch.log(pool_size.to(pos.device, pos.dtype))).unsqueeze(1)  # (B,1) log m·P_n
    if isinstance(log_z, torch.Tensor):
        log_z = log_z.to(pos.device, pos.dtype).view(-1, 1)  # (B,1)
    lp_pos = pos.unsqueeze(1) - log_z  # (B,1)
    lp_neg = neg - log_z  # (B,m)
    log_d1_pos = lp_pos - torch.logaddexp(lp_pos, log_mpn)  # log P(D=1 | positive)
    log_d0_neg = log_mpn - torch.logaddexp(lp_neg, log_mpn)  # log P(D=0 | negative j)
    return -(log_d1_pos.squeeze(1) + log_d0_neg.sum(1)).mean()


class CARL(FreeLB):
    name = "carl"
    Config = CARLConfig
    is_attack = False  # as an attack it would be FreeLB's; listed as a training method only
    paper = "Qiu et al. 2021, CARL (§3.2, Eqs. 1–6) on top of FreeLB"

    def __init__(self, config: CARLConfig | None = None):
        super().__init__(config)
        self.sampler: NegativeSampler | None = None
        self.bank_orig: MemoryBank | None = None
        self.bank_adv: MemoryBank | None = None
        self.train_texts: list[str] = []
        self.num_negatives = 0
        self.completed_steps = 0
        self.start_step: int | None = None  # resolved by plan() (or the explicit step count)
        self.ld_steps = 0  # optimiser steps whose loss included L_D
        self.banks_filled_at: int | None = None  # the step count when the banks were initialised
        self.neg_generator: torch.Generator | None = None
        self.init_generator: torch.Generator | None = None
        self._neg_ids: torch.Tensor | None = None
        self._r: torch.Tensor | None = None  # R of this optimiser step (with graph) and its leaf copy
        self._r_leaf: torch.Tensor | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def setup(self, model, train_data=None, seed: int = 0) -> None:
        super().setup(model, train_data, seed)
        if train_data is None:
            raise AdvvizError("CARL needs the training set (memory banks hold one row per example)")
        seed = seed % (2**31)
        self.neg_generator = torch.Generator().manual_seed(seed + 1)
        self.init_generator = torch.Generator().manual_seed(seed + 2)
        self.train_texts = list(train_data.texts)
        self.sampler = NegativeSampler(train_data.labels)
        self.num_negatives = self.config.negatives or default_negatives(len(self.train_texts))
        self.bank_orig = self.bank_adv = None
        self.completed_steps = self.ld_steps = 0
        self.banks_filled_at = None

    def plan(self, total_steps: int, steps_per_epoch: int, dataset: str | None = None) -> None:
        """Resolve ``--carl-start`` for a run of ``total_steps`` optimiser steps (counted as the
        Trainer counts them, i.e. per global batch under several processes) and refuse a start
        that would leave L_D off for the whole run."""
        spec = self.config.carl_start
        start = resolve_carl_start(spec, total_steps, steps_per_epoch, dataset)
        if start >= total_steps:
            suggest = resolve_carl_start(CARLConfig.carl_start, total_steps, steps_per_epoch)
            raise AdvvizError(
                f"--carl-start {spec} is step {start}, but this run has {total_steps} optimiser steps: L_D "
                f"would never be on and the checkpoint would be FreeLB saved as {self.name}; use e.g. "
                f"--carl-start {CARLConfig.carl_start} (step {suggest}) or --carl-start {max(0, total_steps // 3)}")
        self.start_step = start

    def _start(self) -> int:
        if self.start_step is None:
            kind, v = parse_carl_start(self.config.carl_start)
            if kind != "steps":
                raise AdvvizError(f"--carl-start {self.config.carl_start} is relative to the run: call "
                                  f"plan(total_steps, steps_per_epoch) first (the Trainer does)")
            self.start_step = int(v)
        return self.start_step

    def on_step_end(self, model, step: int) -> None:
        self.completed_steps = step

    def describe(self) -> dict:
        return {**super().describe(), "negatives_resolved": self.num_negatives}

    def metrics(self) -> dict:
        """What a checkpoint records of the warm start (see the class docstring)."""
        return {"carl": {"start_spec": self.config.carl_start, "start_step": self.start_step,
                         "banks_filled_at": self.banks_filled_at, "ld_steps": self.ld_steps}}

    # -- resume (``advviz train --resume``) -------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Generators, the optimiser-step counter (warm start) and both banks, so a resumed run
        continues bit-identically instead of restarting the warm start."""
        out = {**super().state_dict(), "completed_steps": torch.tensor([self.completed_steps]),
               "ld_steps": torch.tensor([self.ld_steps]),
               "banks_filled_at": torch.tensor([-1 if self.banks_filled_at is None else self.banks_filled_at])}
        for name in ("neg_generator", "init_generator"):
            gen = getattr(self, name)
            if gen is not None:
                out[name] = gen.get_state()
        if self.banks_ready:
            out["bank_orig"], out["bank_adv"] = self.bank_orig.memory, self.bank_adv.memory
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        super().load_state_dict(state)
        if "completed_steps" in state:
            self.completed_steps = int(state["completed_steps"][0])
        if "ld_steps" in state:
            self.ld_steps = int(state["ld_steps"][0])
            filled = int(state["banks_filled_at"][0])
            self.banks_filled_at = None if filled < 0 else filled
        for name in ("neg_generator", "init_generator"):
            if name in state and getattr(self, name) is not None:
                getattr(self, name).set_state(state[name])
        if "bank_orig" in state:
            n, d = state["bank_orig"].shape
            self.bank_orig, self.bank_adv = MemoryBank(n, d), MemoryBank(n, d)
            self.bank_orig.fill(torch.arange(n), state["bank_orig"])
            self.bank_adv.fill(torch.arange(n), state["bank_adv"])

    @property
    def active(self) -> bool:
        """L_D is on once the warm start's optimiser steps are done (Table 3)."""
        return self.completed_steps >= self._start()

    def checkpoint_eligible(self, step: int) -> bool:
        """A checkpoint is CARL only once L_D has shaped at least one step (step > the start)."""
        return step > self._start()

    @property
    def banks_ready(self) -> bool:
        return self.bank_orig is not None

    # -- bank initialisation (one pass over the training set) -----------------------------------
    def init_banks(self, model, batch_size: int = 64) -> None:
        """B_orig[i] = R_i, B_adv[i] = R_adv,i for every training example (FreeLB δ as an attack,
        eval mode, no parameter gradients)."""
        core = unwrap(model)
        if self.sampler is None:
            raise AdvvizError("CARL.setup(model, train_data) was not called")
        was_training = core.training
        core.eval()
        n, dev = len(self.train_texts), core.device
        try:
            for s in range(0, n, batch_size):
                texts = self.train_texts[s: s + batch_size]
                batch = {k: v.to(dev) for k, v in core.tokenizer.batch(texts).items()}
                batch["labels"] = self.sampler.labels[s: s + batch_size].to(dev)
                idx = torch.arange(s, s + len(texts))
                delta = FreeLB.perturb(self, core, batch, self.init_generator)
                with torch.no_grad():
                    embeds = core.embed(batch["input_ids"])
                    r = core(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).pooled
                    r_adv = core(inputs_embeds=embeds + delta, attention_mask=batch["attention_mask"]).pooled
                if self.bank_orig is None:
                    self.bank_orig = MemoryBank(n, r.shape[-1], dev)
                    self.bank_adv = MemoryBank(n, r.shape[-1], dev)
                self.bank_orig.fill(idx, F.normalize(r.float(), dim=-1))
                self.bank_adv.fill(idx, F.normalize(r_adv.float(), dim=-1))
        finally:
            core.train(was_training)

    # -- training ------------------------------------------------------------------------------
    def train_step(self, model, batch, backward):
        if self.active and not self.banks_ready:
            self.init_banks(model)
            self.banks_filled_at = self.completed_steps
        self._neg_ids = self._r = self._r_leaf = None
        out = super().train_step(model, batch, backward)
        if self.active:
            self.ld_steps += 1
        return out

    def contrastive_loss(self, r: torch.Tensor, r_adv: torch.Tensor, labels: torch.Tensor,
                         neg_ids: torch.Tensor, idx: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """L_D = L_D^o + L_D^a (Eqs. 2–3) for normalised R, R_adv <float>[B,d], the anchors' example
        ids ``idx`` [B] (bank positives) and negative ids [B,m]."""
        cfg = self.config
        # log h of Eq. 4 for the negatives' rows (``contrastive_logits`` on read rows, computed from one
        # product with each bank): anchored on R_adv against B_orig (L_D^a), on R against B_adv (L_D^o)
        if cfg.carl_positive == "bank":  # the anchor's own row first, then its negatives: one product a bank
            if idx is None:
                raise AdvvizError("--carl-positive bank needs the anchors' example ids")
            ids = torch.cat([idx.view(-1, 1).to(neg_ids.device), neg_ids], dim=1)  # (B,1+m)
            s_a = self.bank_orig.scores(r_adv, ids) / cfg.tau
            s_o = self.bank_adv.scores(r, ids) / cfg.tau
            pos_a, neg_a, pos_o, neg_o = s_a[:, 0], s_a[:, 1:], s_o[:, 0], s_o[:, 1:]
        else:
            neg_a = self.bank_orig.scores(r_adv, neg_ids) / cfg.tau  # (B,m)
            neg_o = self.bank_adv.scores(r, neg_ids) / cfg.tau
            pos_a = pos_o = (r_adv * r).sum(-1) / cfg.tau  # each view's positive is the other: one product
        if cfg.carl_loss == "infonce":
            la, lo = infonce_loss(pos_a, neg_a), infonce_loss(pos_o, neg_o)
        else:
            pool = self.sampler.pool_size(labels)
            la = nce_loss(pos_a, neg_a, nce_log_z(neg_a, pool), pool)
            lo = nce_loss(pos_o, neg_o, nce_log_z(neg_o, pool), pool)
        return lo + la, {"carl_loss": float((lo + la).detach()), "carl_loss_orig": float(lo.detach()),
                         "carl_loss_adv": float(la.detach())}

    def extra_loss(self, model, batch, adv_out, step):
        if not self.active:
            return None, {}
        if "index" not in batch:
            raise AdvvizError("CARL needs each batch's example ids ('index') for its memory banks")
        ids, att, y = batch["input_ids"], batch["attention_mask"], batch["labels"]
        last = step == self.config.steps - 1
        if self._r is None:  # R = f(E): one clean forward per optimiser step (θ and E do not change within it)
            clean = model(input_ids=ids, attention_mask=att)
            self._r = F.normalize(clean.pooled.float(), dim=-1)  # with its graph, back-propagated once
            self._r_leaf = self._r.detach().requires_grad_()  # stands for R on the earlier ascent steps
        # the last step scores the real R (its graph reaches θ); earlier steps score a leaf copy whose
        # gradient Σ_t ∂(L_D,t/K)/∂R is handed to R's graph on the last step, scaled by K as FreeLB
        # divides every step's loss by K: the same θ-gradient as K clean passes, from one
        r = self._r if last else self._r_leaf
        r_adv = F.normalize(adv_out.pooled.float(), dim=-1)
        if self._neg_ids is None:  # one draw per optimiser step, shared by the K ascent steps
            self._neg_ids = self.sampler.sample(y, self.num_negatives, self.neg_generator)
        loss, logs = self.contrastive_loss(r, r_adv, y, self._neg_ids, batch["index"])
        loss = self.config.carl_weight * loss
        logs["carl_pos_cos"] = float((r * r_adv).sum(-1).mean().detach())
        if last:
            if self._r_leaf.grad is not None:
                loss = loss + self.config.steps * (self._r * self._r_leaf.grad).sum()
            # Eq. 5, once per optimiser step, with the final δ; multi-process: every rank applies every
            # rank's rows, so the banks stay global and equal
            idx = gather_rows(batch["index"])
            self.bank_orig.update(idx, gather_rows(r.detach()), self.config.bank_momentum)
            self.bank_adv.update(idx, gather_rows(r_adv.detach()), self.config.bank_momentum)
            self._r = self._r_leaf = None
        return loss, logs
