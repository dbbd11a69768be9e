"""One explicit training loop for every method and model family, built on Accelerate.

Accelerate handles device placement, mixed precision and distribution; the loop itself stays
here, visible: batch -> ``method.train_step`` (which calls ``backward``) -> clip -> step. The best
dev-accuracy checkpoint is written atomically after each evaluation.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .config import PRESETS, Config, hp, is_rnn, refuse_unused_by_family, train_default
from .data import (
    TextDataset, align_labels, concat, dataset_files, label_map_record, labeled_split, load_splits,
    load_unlabeled, parse_label_map, read_augment,
)
from .errors import AdvvizError
from .evaluate import CHANCE_PROBES, at_chance, chance_record, evaluate, majority_share, stall_note
from .limits import MAX_TEXT_CHARS, check_fits, seed_problem
from . import substitutions
from .methods import METHODS, Method, build_method, resolve_method
from .methods.substitution_sets import SubstitutionMixin
from .models import ModelOptions, build_model
from .storage import outdir
from .storage.checkpoint import save_checkpoint, write_json_atomic
from .storage.jsonio import dumps
from .storage.outdir import DEFAULT_MODELS_DIR
from .storage.outputs import check_output_dir
from .tokenizers import count_clipped
from .transfer import initial_model, source_arch



@dataclass(frozen=True)
class TrainConfig(Config):
    """Everything ``advviz train`` takes besides the method's own hyperparameters and the model
    options. ``None`` for ``lr``/``grad_clip`` means the family's value (``config.TRAIN_DEFAULTS``)."""

    dataset: str = hp("sst2-sent", "a known name (advviz data list) or a .csv/.tsv/.jsonl file")
    arch: str = hp("lstm", "lstm | bigru | minilm | a Hugging Face encoder id or path")
    method: str = hp("baseline", "training method (each one's flags: advviz train --method NAME --help)",
                     choices=list(METHODS))
    preset: str = hp("family", "method defaults: scaled for the model family, or the papers' own values",
                     choices=PRESETS)
    epochs: int = hp(3, "passes over the training set")
    max_train: int | None = hp(None, "train on a seeded subset of N examples")
    max_steps: int | None = hp(None, "stop after N optimiser steps")
    max_eval: int | None = hp(None, "evaluate on a seeded subset of N dev examples")
    batch_size: int = hp(32, "examples per optimiser step (per process under torchrun)")
    lr: float | None = hp(None, "AdamW learning rate")
    weight_decay: float = hp(0.0, "AdamW weight decay")
    warmup: float = hp(0.1, "transformers: share of the steps for linear warm-up, then linear decay")
    grad_clip: float | None = hp(None, "largest gradient norm (clipped above)")
    seed: int = hp(0, "seed of initialisation, data order, dropout and the methods' own draws")
    out: str | None = hp(None, "checkpoint directory: new, empty, or advviz's own run "
                               "(default models/ARCH-DATASET-METHOD-sSEED)")
    data_dir: str | None = hp(None, "folder of the *.tsv.gz files (env ADVVIZ_DATA_DIR; default ../shared/data)")
    text_col: str | None = hp(None, "text column of a local file (auto-detected)")
    label_col: str | None = hp(None, "label column of a local file (auto-detected)")
    label_map: str | None = hp(None, "what the labels mean, for a column mixing names and numbers: FROM=TO pairs "
                                     "(pos=1,neg=0) or a JSON file of one object; applied to every split and "
                                     "--augment file, and recorded for eval", metavar="MAP")
    labeled_fraction: float | None = hp(None, "semi-supervised: keep a seeded, stratified share F of the train "
                                              "labels (0 < F <= 1); vat and uae also learn from the rest as "
                                              "unlabeled text, every other method trains on the labelled part only",
                                        metavar="F")
    unlabeled: str | None = hp(None, "more unlabeled text for vat/uae: a data set name (its train texts) or a "
                                     ".txt (a text a line) / .csv / .tsv / .jsonl file with a text column "
                                     "(no label needed)", metavar="NAME|FILE")
    augment: tuple[str, ...] | None = hp(None, "add the rows (text, label) of an `advviz augment` file to the "
                                               "labelled training set", repeat=True, metavar="FILE")
    init_from: str | None = hp(None, "start from this model, its head kept: an advviz transformer checkpoint, or a "
                                     "Hugging Face sequence classifier (a save_pretrained folder or hub id, as "
                                     "`advviz import` reads); --arch and the model flags are then the source's",
                               metavar="DIR_OR_SRC")
    mixed_precision: str = hp("no", "mixed precision on a GPU", choices=["no", "fp16", "bf16"])
    log_every: int = hp(20, "optimiser steps between logged training lines")
    eval_every: int | None = hp(None, "optimiser steps between evaluations (default: each epoch)")
    save_every: int | None = hp(None, "steps between resume states (also saved at each epoch end and on Ctrl-C)")
    resume: bool = hp(False, "continue the run in --out from its last saved state")
    overwrite: bool = hp(False, "replace advviz's own run in --out (a directory holding anything else is "
                                "never replaced)")

    def __post_init__(self):
        super().__post_init__()  # the documented maxima (limits.MAXIMA)
        for name in ("epochs", "batch_size", "log_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive")
        for name in ("max_train", "max_steps", "max_eval", "eval_every", "save_every"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive")
        if self.lr is not None and not (0 < self.lr < 1):
            raise ValueError("--lr must be in (0, 1)")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"--weight-decay must be a finite number >= 0, got {self.weight_decay}")
        if not 0 <= self.warmup <= 1:
            raise ValueError(f"--warmup must be in [0, 1], got {self.warmup}")
        if self.grad_clip is not None and not (math.isfinite(self.grad_clip) and self.grad_clip > 0):
            raise ValueError(f"--grad-clip must be a positive number (the largest gradient norm), got {self.grad_clip}")
        if seed_problem(self.seed):
            raise ValueError(seed_problem(self.seed))
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError("--mixed-precision must be no, fp16 or bf16")
        if self.preset not in PRESETS:
            raise ValueError(f"--preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.labeled_fraction is not None and not (math.isfinite(self.labeled_fraction)
                                                      and 0 < self.labeled_fraction <= 1):
            raise ValueError(f"--labeled-fraction must be in (0, 1], got {self.labeled_fraction}")
        if self.augment is not None:
            object.__setattr__(self, "augment", tuple(str(a) for a in self.augment) or None)

    @property
    def is_rnn(self) -> bool:
        return is_rnn(self.arch)

    @property
    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else train_default(self.arch, "lr")

    @property
    def resolved_grad_clip(self) -> float:
        return self.grad_clip if self.grad_clip is not None else train_default(self.arch, "grad_clip")


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1):
    """Index lists of one epoch: a permutation seeded by (seed, epoch), cut into global batches of
    ``batch_size * world``, of which this process takes its contiguous share. Needs no saved state:
    a resumed epoch draws the same permutation and skips what was done."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=gen).tolist()
    global_bs = batch_size * world
    for s in range(0, n, global_bs):
        chunk = perm[s: s + global_bs]
        share = math.ceil(len(chunk) / world)
        mine = chunk[rank * share: (rank + 1) * share]
        yield mine if mine else chunk[-1:]  # a process never gets an empty batch


def make_batch(tokenizer, ds: TextDataset, idx: list[int], device,
               unlabeled: list[str] | None = None) -> dict[str, torch.Tensor]:
    """The labelled examples ``idx`` of ``ds``; with ``unlabeled`` texts (a label-free method's
    semi-supervised batch) those follow as rows with label -100, ``labeled`` False, index -1."""
    unlabeled = list(unlabeled or [])
    batch = tokenizer.batch([ds.texts[i] for i in idx] + unlabeled)
    batch["labels"] = torch.tensor([ds.labels[i] for i in idx] + [-100] * len(unlabeled), dtype=torch.long)
    batch["index"] = torch.tensor(list(idx) + [-1] * len(unlabeled), dtype=torch.long)  # example ids (CARL banks)
    if unlabeled:
        batch["labeled"] = torch.tensor([True] * len(idx) + [False] * len(unlabeled))
    return {k: v.to(device) for k, v in batch.items()}


class UnlabeledStream:
    """The unlabeled rows of each optimiser step: ``batch_size`` texts per process, read in order
    from a seeded permutation of the pool that is redrawn each time the pool is used up. The rows
    of step s depend on (seed, s) only, so a resumed run draws what the uninterrupted one did."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self._perms: dict[int, list[int]] = {}

    def _perm(self, cycle: int) -> list[int]:
        if cycle not in self._perms:
            self._perms = {cycle: torch.randperm(self.n, generator=torch.Generator().manual_seed(
                self.seed * 1_000_003 + 500_009 + cycle)).tolist()}
        return self._perms[cycle]

    def indices(self, step: int) -> list[int]:
        """This process's share of step ``step`` (0-based) of the global unlabeled batch."""
        size = self.batch_size * self.world
        pos, out = step * size, []
        while len(out) < size:
            cycle, off = divmod(pos, self.n)
            take = self._perm(cycle)[off: off + size - len(out)]
            out += take
            pos += len(take)
        share = math.ceil(size / self.world)
        return out[self.rank * share: (self.rank + 1) * share]


def default_out_dir(cfg: TrainConfig) -> Path:
    arch = cfg.arch.replace("/", "_")
    return DEFAULT_MODELS_DIR / f"{arch}-{cfg.dataset.replace('/', '_').split('.')[0]}-{cfg.method}-s{cfg.seed}"


def _lr_lambda(total: int, warmup: float, is_rnn: bool):
    if is_rnn:
        return lambda step: 1.0
    w = max(1, int(total * warmup))
    return lambda step: min((step + 1) / w, max(0.0, (total - step) / max(1, total - w)))


def train_one_step(method: Method, model, batch, optimizer, scheduler, accelerator, params, clip: float):
    """One optimisation step: gradients from the method, clip, step. Returns None (and leaves the
    weights untouched) when the loss is not finite."""
    optimizer.zero_grad(set_to_none=True)
    out = method.train_step(model, batch, accelerator.backward)
    if not torch.isfinite(out.loss):
        optimizer.zero_grad(set_to_none=True)
        return None
    accelerator.clip_grad_norm_(params, clip)
    optimizer.step()
    scheduler.step()
    return out


@dataclass
class TrainResult:
    out_dir: Path
    metrics: dict
    log: list[dict] = field(default_factory=list)
    is_main: bool = True  # False on the other processes of a distributed run


class Interrupted(AdvvizError):
    """SIGINT/SIGTERM: the run stopped cleanly after saving its resume state."""

    exit_code = 130


# TrainConfig fields that may differ between a run and its resumption
_RESUMABLE_CHANGES = {"resume", "save_every", "log_every", "overwrite"}


class _StopFlag:
    """SIGINT/SIGTERM while the run is being set up (reading, tokenizing, building) stop it at once
    (nothing to save yet; the output lock is released on the way out). Once training runs
    (``immediate`` False), the first signal asks the loop to save and stop after the step under
    way; should that step (or the evaluation after it) take more than ``GRACE_S`` seconds more, the
    run stops anyway, as a kill would, keeping the state saved last (every write is atomic, so
    nothing is half-written, and a resumed run is bit-identical either way). A second signal
    stops at once (the handlers from before the run are back by then)."""

    GRACE_S = 5.0

    def __init__(self):
        self.requested, self._old, self.immediate = None, {}, True
        self.saved_step: int | None = None  # the step of the resume state on disk (None: none yet)
        self._armed = False

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = signal.Signals(signum).name
        for sig, old in self._old.items():
            signal.signal(sig, old)
        if self.immediate:
            raise Interrupted(f"stopped by {self.requested} before training started; nothing was written")
        if hasattr(signal, "setitimer"):  # the step under way has GRACE_S seconds to end
            self._old[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._overdue)
            signal.setitimer(signal.ITIMER_REAL, self.GRACE_S)
            self._armed = True

    def _overdue(self, signum, frame):
        self.disarm()
        kept = (f"the state saved at step {self.saved_step} is kept — continue with the same command plus --resume"
                if self.saved_step is not None else "no resume state had been saved yet")
        raise Interrupted(f"stopped by {self.requested}: the step under way did not end within "
                          f"{self.GRACE_S:g} s; {kept}")

    def disarm(self) -> None:
        """Cancel the grace timer (the loop is about to save and stop by itself)."""
        if self._armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self._armed = False

    def __exit__(self, *exc):
        self.disarm()
        for sig, old in self._old.items():
            signal.signal(sig, old)


def resolve_training(train: dict, model: dict) -> tuple[TrainConfig, ModelOptions]:
    """(TrainConfig, ModelOptions) from the training and model settings given (``None`` = not
    given), with the one validation of every path that starts a run (``advviz train``, the app's
    form, background jobs): the dataclasses' checks and :func:`refuse_unused_by_family`, each as
    one line (``AdvvizError``)."""
    train = {k: v for k, v in train.items() if v is not None}
    model = {k: v for k, v in model.items() if v is not None}
    if train.get("init_from"):
        train["arch"] = _init_arch(train, model)
    try:
        cfg = TrainConfig(**train)
        refuse_unused_by_family(cfg.arch, {**train, **model})
        return cfg, ModelOptions(**model)
    except (TypeError, ValueError) as e:
        raise AdvvizError(str(e)) from None


@dataclass
class Counters:
    """Where a run is: the resumable counters, saved in the resume state's ``counters`` object with
    the log beside them (:meth:`to_json`; the keys and their order are the resume format, read back
    by :meth:`from_json` from files written by any earlier advviz)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    seen: int = 0
    train_time: float = 0.0
    best: dict = field(default_factory=lambda: {"dev_accuracy": -1.0})  # the best checkpoint's metrics

    def to_json(self, log: list) -> dict:
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "log": log}

    @classmethod
    def from_json(cls, c: Counters) -> "Counters":
        """From a ``counters`` object (checked by ``storage.resume``; the ``log`` beside them is the caller's)."""
        return cls(**{f.name: c[f.name] for f in fields(cls)})


@dataclass
class _Run:
    """What one :meth:`Trainer.fit` built and the loop reads: the accelerator, the models and their
    optimisation, the data, the run's recorded settings and sizes."""

    acc: object  # accelerate.Accelerator
    model: torch.nn.Module  # prepared by the accelerator (wrapped when distributed)
    core: torch.nn.Module  # the classifier itself (what is saved)
    extras: dict  # method-owned modules, prepared
    extras_core: dict  # the same, unwrapped (what is saved)
    optimizer: object
    scheduler: object
    params: list
    train: TextDataset
    dev: TextDataset
    run: dict  # the checkpoint's run record
    total: int  # optimisation steps of the run
    unlabeled: list
    unlabeled_stream: object  # UnlabeledStream | None
    steps_per_epoch: int
    n_params: int
    majority: float | None = None  # the dev set's majority-class share, computed on first use


def _init_arch(train: dict, model: dict) -> str:
    """The architecture of ``--init-from``: the source's. ``--arch`` or a model flag, which would
    describe another model than the one training starts from, is refused with one line."""
    given = (["arch"] if "arch" in train else []) + sorted(model)
    if given:
        raise AdvvizError(f"--{given[0].replace('_', '-')} does not apply with --init-from: the model is "
                          f"{train['init_from']} as it is (its architecture, tokenizer and head)")
    return source_arch(train["init_from"])


class Trainer:
    """``Trainer(cfg, method).fit()``: builds data and model, trains, keeps the best checkpoint,
    saves resumable state every ``save_every`` steps and at each epoch end."""

    def __init__(self, cfg: TrainConfig, method: Method | None = None, model_options: ModelOptions = ModelOptions(),
                 progress: bool = True, callback=None, on_step=None):
        self.cfg, self.opts = cfg, model_options
        self.method = method or build_method(cfg.method, resolve_method(cfg.method, cfg.arch, preset=cfg.preset))
        self.progress = progress
        self.callback = callback  # called with each log and evaluation line (dict)
        self.on_step = on_step  # called with (step, total) after each optimiser step (background jobs)
        self.out_dir = Path(os.path.abspath(cfg.out)) if cfg.out else default_out_dir(cfg)
        self.log: list[dict] = []

    def _log(self, line: dict) -> None:
        self.log.append(line)
        if self.callback is not None:
            self.callback(line)

    # -- setup -------------------------------------------------------------------------------
    def _check_out_dir(self) -> dict | None:
        """The saved state to resume from, or None for a fresh run; refuses to clobber work and
        to write where advviz cannot prove the directory is its own (advviz.storage.outdir)."""
        # deferred: `advviz --help` must not load it
        from .storage.resume import has_state, load_state, resume_dir

        cfg = self.cfg
        has_ckpt = outdir.check_replaceable(self.out_dir, outdir.CHECKPOINT) == outdir.CHECKPOINT
        outdir.check_replaceable(resume_dir(self.out_dir), outdir.RESUME)
        inputs = [(f, "the data file") for f in dataset_files(cfg.dataset, cfg.data_dir)]
        inputs += [(f, "the --augment file") for f in cfg.augment or ()]
        inputs += [(f, "the --unlabeled file") for f in (dataset_files(cfg.unlabeled, cfg.data_dir) if cfg.unlabeled else ())]
        for d in (self.out_dir, resume_dir(self.out_dir)):
            check_output_dir(d, "--out", inputs)
        saved = load_state(self.out_dir) if cfg.resume else None
        if cfg.resume and saved is None:
            if has_ckpt:
                raise AdvvizError(f"nothing to resume in {self.out_dir}: the run there finished "
                                  f"(or kept no resume state); use a new --out or --overwrite")
            raise AdvvizError(f"nothing to resume in {self.out_dir}: no run saved its state there; "
                              f"start it without --resume")
        if not cfg.resume and not cfg.overwrite and (has_ckpt or has_state(self.out_dir)):
            raise AdvvizError(f"{self.out_dir} already holds a run; pass --resume to continue it or "
                              f"--overwrite to replace it")
        if saved is not None:
            # a setting added after the state was written (an older advviz) ran at its default then
            defaults = json.loads(dumps(asdict(TrainConfig())))
            old = {**defaults, **saved[0]["run"]["train"]}
            old = {k: v for k, v in old.items() if k not in _RESUMABLE_CHANGES}
            new = {k: v for k, v in json.loads(dumps(asdict(cfg))).items() if k not in _RESUMABLE_CHANGES}
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            # the method's settings, not what setup derives from the data (CARL's resolved m)
            want = {"name": self.method.name, **self.method.config.to_dict()}
            have = {k: v for k, v in saved[0]["run"]["method"].items() if k in want}
            if diff or have != want:
                raise AdvvizError(f"cannot resume {self.out_dir} with different settings "
                                  f"({', '.join(diff) or 'method hyperparameters'})")
        return saved

    def fit(self) -> TrainResult:
        """Train under a lock on the output directory (only the process that writes, rank 0 of a
        distributed run, takes it); the lock is released on every way out."""
        writer = int(os.environ.get("RANK", "0") or 0) == 0
        lock = outdir.OutputLock(self.out_dir) if writer else None
        if lock is not None:
            outdir.check_replaceable(self.out_dir, outdir.CHECKPOINT)  # refuse before leaving a lock file
            lock.acquire()
        try:
            with _StopFlag() as stop:
                return self._fit(stop)
        finally:
            if lock is not None:
                lock.release()

    def _fit(self, stop: "_StopFlag") -> TrainResult:
        # optional and slow to import: loaded only when used
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        cfg = self.cfg
        saved = self._check_out_dir()
        set_seed(cfg.seed)  # dropout and init draw from the global RNGs; data order has its own seeds
        splits = load_splits(cfg.dataset, cfg.data_dir, cfg.text_col, cfg.label_col, cfg.label_map)
        if "dev" not in splits:
            raise AdvvizError(f"data set '{cfg.dataset}' has no dev split to select checkpoints on")
        train = splits["train"].subset(cfg.max_train, cfg.seed)
        dev = splits["dev"].subset(cfg.max_eval, cfg.seed)
        if len(train) == 0:
            raise AdvvizError("the train split is empty")
        train, unlabeled, vocab_texts, semi = self._training_sets(train)
        if len(dev) == 0:
            raise AdvvizError(f"the dev split of '{cfg.dataset}' is empty: there is nothing to select checkpoints on")
        if len(set(train.labels)) < 2:
            raise AdvvizError(f"the train examples hold only one class ({train.label_names[train.labels[0]]})"
                              + (f" in the --max-train {cfg.max_train} subset" if cfg.max_train else "")
                              + "; a classifier needs at least two")
        self._check_size(vocab_texts, train.num_labels)
        cut = self._texts_cut(train, dev, unlabeled)
        acc = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())
        steps_per_epoch = math.ceil(len(train) / (cfg.batch_size * acc.num_processes))
        total = min(cfg.max_steps or 10**12, cfg.epochs * steps_per_epoch)
        self.method.plan(total, steps_per_epoch, cfg.dataset)  # refuses settings the run cannot honour
        if cfg.init_from:
            model, model_info, train, dev = self._initial_model(train, dev)
        else:
            model, model_info = build_model(cfg.arch, vocab_texts, train.num_labels, self.opts, cfg.seed,
                                            self._vocabulary_substitutes())
        self._check_model(model, model_info, len(train))
        self.method.setup(model, train, cfg.seed)
        extras = self.method.extra_modules()
        params = list({id(p): p for m in [model, *extras.values()] for p in m.parameters()}.values())
        lr = cfg.resolved_lr
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
        # stepped by us once per global step (not wrapped: Accelerate would step it per process)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total, cfg.warmup, cfg.is_rnn))
        model, optimizer = acc.prepare(model, optimizer)
        extras = {k: acc.prepare(v) for k, v in extras.items()}
        core = acc.unwrap_model(model)
        core_ids = {id(p) for p in core.parameters()}
        self.extra_parameters = {k: sum(p.numel() for p in m.parameters() if id(p) not in core_ids)
                                 for k, m in extras.items()}  # what each head adds (CARL paper Table 7)
        run = {
            "train": asdict(cfg), "method": self.method.describe(), "model_options": asdict(self.opts),
            "data": {"name": cfg.dataset, "label_names": train.label_names, "label_mapping": train.label_mapping,
                     **({"label_map": label_map_record(parse_label_map(cfg.label_map))} if cfg.label_map else {}),
                     "train_examples": len(train), "dev_examples": len(dev), "split_info": train.split_info,
                     "dev_split_info": dev.split_info, "skipped_empty": train.skipped_empty,
                     "unlabeled_examples": len(unlabeled), **({"semi_supervised": semi} if semi else {}),
                     **({"texts_cut": cut} if cut else {})},
            "model_info": model_info, "lr": lr, "num_processes": acc.num_processes,
            "grad_clip": cfg.resolved_grad_clip,
        }
        self._ctx = _Run(acc=acc, model=model, core=core, extras=extras,
                         extras_core={k: acc.unwrap_model(v) for k, v in extras.items()},  # what is saved
                         optimizer=optimizer, scheduler=scheduler,
                         params=params, train=train, dev=dev, run=run, total=total, unlabeled=unlabeled,
                         unlabeled_stream=UnlabeledStream(len(unlabeled), cfg.batch_size, cfg.seed, acc.process_index,
                                                          acc.num_processes) if unlabeled else None,
                         steps_per_epoch=steps_per_epoch, n_params=sum(p.numel() for p in params))
        counters = Counters()
        if saved is not None:
            # deferred: `advviz --help` must not load it
            from .storage.resume import restore, resume_dir

            counters = Counters.from_json(restore(saved[0], saved[1], model=core, extras=self._ctx.extras_core,
                                                  optimizer=optimizer, scheduler=scheduler, method=self.method,
                                                  directory=resume_dir(self.out_dir)))
            self.log = list(saved[0]["counters"].get("log", []))
            stop.saved_step = counters.step
            if self.progress and acc.is_main_process:
                tqdm.write(f"resuming {self.out_dir} at step {counters.step} (epoch {counters.epoch})")
        stop.immediate = False  # from here on a signal saves the state and stops at the next step
        counters = self._loop(counters, stop)
        return self._finish(counters)

    def _vocabulary_substitutes(self):
        """``--vocab-substitutes``: the function giving the words a word vocabulary adds (the
        substitutes of its words in the method's sets, second order for DNE), or None."""
        mode, arch = self.opts.vocab_substitutes, self.cfg.arch
        words = is_rnn(arch) and not (arch == "bigru" and self.opts.char)
        if mode == "yes" and not words:
            raise AdvvizError(f"--vocab-substitutes yes is for a word vocabulary (lstm, bigru without --char); "
                              f"{arch}{' --char' if self.opts.char else ''} has none")
        if not words or mode == "no" or (mode == "auto" and not isinstance(self.method, SubstitutionMixin)):
            return None
        sets = substitutions.load(getattr(self.method.config, "neighbors", None) or None)  # as the method reads it
        second = bool(getattr(self.method, "second_order", False))
        return lambda vocab: substitutions.vocabulary_words(sets, vocab, second)

    def _initial_model(self, train: TextDataset, dev: TextDataset):
        """(model, info, train, dev) of ``--init-from``: the source model, its head kept, and the
        splits with their labels in its order — a data set whose label names differ is refused
        with one line naming both (``data.align_labels``; rename with ``advviz import --label-map``
        or read the data with ``--label-map``)."""
        src = self.cfg.init_from
        model, names = initial_model(src)
        train, dev = (align_labels(d, names, src, self.cfg.dataset) for d in (train, dev))
        return model, {"init_from": src, "init_label_names": names}, train, dev

    def _training_sets(self, train: TextDataset) -> tuple[TextDataset, list[str], list[str], dict]:
        """(labelled training set, unlabeled texts the method learns from, the texts the vocabulary is
        built from, what was done — recorded in the checkpoint as ``data.semi_supervised``).

        ``--labeled-fraction`` keeps a seeded stratified share of the labels; the rest of the texts
        go to a label-free method as unlabeled text (a supervised method never sees them) and to
        the vocabulary either way, so runs that differ only by the method share one vocabulary.
        ``--unlabeled`` adds texts for label-free methods (refused for the others, which would
        ignore them); ``--augment`` files add labelled rows."""
        cfg, uses = self.cfg, self.method.uses_unlabeled
        semi: dict = {}
        rest: list[str] = []
        if cfg.labeled_fraction is not None and cfg.labeled_fraction < 1:
            train, rest, semi["labeled_split"] = labeled_split(train, cfg.labeled_fraction, cfg.seed)
        extra: list[str] = []
        if cfg.unlabeled:
            if not uses:
                free = ", ".join(n for n, c in METHODS.items() if c.uses_unlabeled)
                raise AdvvizError(f"--unlabeled is text for label-free methods ({free}); --method {cfg.method} "
                                  f"trains on labelled examples only and would ignore it")
            extra, semi["unlabeled_source"] = load_unlabeled(cfg.unlabeled, cfg.data_dir)
        vocab_texts = list(train.texts) + rest + extra
        if cfg.augment:
            semi["augment"] = []
            for path in cfg.augment:
                rows = read_augment(path, train, cfg.label_map)
                semi["augment"].append({"file": str(path), "rows": len(rows)})
                vocab_texts += rows.texts
                train = concat(train, rows, {"augmented_rows": train.split_info.get("augmented_rows", 0) + len(rows)})
        unlabeled = rest + extra if uses else []
        if semi:
            semi["unlabeled_used"] = len(unlabeled)
        return train, unlabeled, vocab_texts, semi

    def _texts_cut(self, train: TextDataset, dev: TextDataset, unlabeled: list[str]) -> dict:
        """How many texts are longer than a tokenizer reads (``limits.MAX_TEXT_CHARS``; each is
        cut to its first characters), per set: recorded in the checkpoint (``data.texts_cut``) and
        said once on the terminal. Empty when none is."""
        counts = {k: count_clipped(v) for k, v in (("train", train.texts), ("dev", dev.texts),
                                                   ("unlabeled", unlabeled))}
        counts = {k: n for k, n in counts.items() if n}
        if not counts:
            return {}
        if self.progress and int(os.environ.get("RANK", "0") or 0) == 0:
            tqdm.write(f"note: {', '.join(f'{n:,} {k}' for k, n in counts.items())} text(s) longer than "
                       f"{MAX_TEXT_CHARS:,} characters: each is read up to its {MAX_TEXT_CHARS:,}th character")
        return {"max_chars": MAX_TEXT_CHARS, **counts}

    def _check_size(self, texts: list[str], num_labels: int) -> None:
        """Refuse an RNN that cannot fit in memory before building it: weights, gradients and the
        two AdamW moments of the embedding (at most --max-vocab rows), recurrent and head layers."""
        if not self.cfg.is_rnn:
            return
        o, bi = self.opts.resolved(self.cfg.arch), self.cfg.arch == "bigru"
        D = o.embedding_dim if bi else 50  # lstm: GloVe-50d
        h, m = o.hidden_size, o.mlp_hidden
        V = min(o.max_vocab, 2 + sum(len(t) for t in texts))  # never more words than characters
        gates, dirs = (3, 2) if bi else (4, 1)
        H, C = h * dirs, num_labels
        params = V * D + dirs * gates * h * (D + h + 2) + (H * m + m + m * C + C if m else H * C + C)
        flags = "--hidden-size" + (", --embedding-dim" if bi else "") + (" or --mlp-hidden" if m else "")
        check_fits(16 * params, f"the {self.cfg.arch} model ({params:,.0f} parameters: weights, gradients, AdamW state)",
                   f"lower {flags}")

    def _check_model(self, model, model_info: dict, n_train: int) -> None:
        """What the built model cannot work with: a vocabulary without a single word (every token
        would be <unk>; the neighbour-based methods would have nothing to move towards), or a
        --max-length beyond the positions a transformer was trained with."""
        cfg = self.cfg
        if cfg.is_rnn and model_info.get("vocab_size", 3) <= 2:
            raise AdvvizError(f"the vocabulary has no words: none occurs --min-freq {self.opts.min_freq} times in "
                              f"the {n_train} train texts; lower --min-freq")
        if not cfg.is_rnn:
            enc = getattr(model, "encoder", None)
            limit = getattr(getattr(enc, "config", None), "max_position_embeddings", None)
            tok_limit = getattr(getattr(model.tokenizer, "hf", None), "model_max_length", None)
            if isinstance(tok_limit, int) and tok_limit < 10**6:
                limit = min(limit, tok_limit) if isinstance(limit, int) else tok_limit
            if isinstance(limit, int) and model.tokenizer.max_length > limit:
                raise AdvvizError(f"--max-length {model.tokenizer.max_length} is more than {cfg.arch} takes "
                                  f"({limit} positions); use --max-length {limit} or less")

    # -- the loop ------------------------------------------------------------------------------
    def _loop(self, c: Counters, stop: _StopFlag) -> Counters:
        x, cfg = self._ctx, self.cfg
        acc, model, total = x.acc, x.model, x.total
        eval_every = cfg.eval_every or x.steps_per_epoch
        probe_every = max(1, math.ceil(total / CHANCE_PROBES))
        bar = tqdm(total=total, initial=c.step, desc=f"train {cfg.method}",
                   disable=not self.progress or not acc.is_main_process)
        running = {"loss": 0.0, "correct": 0, "n": 0}
        while c.step < total and c.epoch < cfg.epochs:
            batches = epoch_batches(len(x.train), cfg.batch_size, cfg.seed, c.epoch,
                                    acc.process_index, acc.num_processes)
            for i, idx in enumerate(batches):
                if i < c.batch_in_epoch:
                    continue  # done before the resume
                stream = x.unlabeled_stream
                extra = [x.unlabeled[j] for j in stream.indices(c.step)] if stream is not None else None
                batch = make_batch(x.core.tokenizer, x.train, idx, acc.device, extra)
                for m in [model, *x.extras.values()]:
                    m.train()
                t0 = time.perf_counter()
                out = train_one_step(self.method, model, batch, x.optimizer, x.scheduler, acc, x.params,
                                     x.run["grad_clip"])
                if out is None:
                    bar.close()
                    best = c.best
                    where = (f"the last good checkpoint (step {best.get('steps')}) is kept at {self.out_dir}"
                             if best["dev_accuracy"] >= 0 else "no checkpoint had been written yet")
                    raise AdvvizError(f"training diverged: loss is nan or inf at step {c.step + 1}; {where}. "
                                      f"Try a lower --lr or a smaller --epsilon")
                c.step += 1
                c.batch_in_epoch = i + 1
                self.method.on_step_end(model, c.step)
                if self.on_step is not None:
                    self.on_step(c.step, total)
                c.train_time += time.perf_counter() - t0
                bs = len(idx) * acc.num_processes
                c.seen += bs
                self._account(running, out, batch, bs, c, bar)
                if c.step % eval_every == 0 or c.step == total:
                    self._evaluate(c, final=c.step == total)
                elif c.step % probe_every == 0 and at_chance(self.log, self._majority()):
                    self._probe_chance(c)
                end_of_epoch = c.batch_in_epoch == x.steps_per_epoch
                if end_of_epoch:
                    c.epoch, c.batch_in_epoch = c.epoch + 1, 0
                if stop.requested:
                    stop.disarm()  # the step ended in time: save, then stop
                if (cfg.save_every and c.step % cfg.save_every == 0) or end_of_epoch or stop.requested:
                    self._save_state(c)
                    stop.saved_step = c.step
                if stop.requested:
                    bar.close()
                    raise Interrupted(f"stopped by {stop.requested} at step {c.step}; state saved — continue "
                                      f"with the same command plus --resume")
                if c.step >= total:
                    break
        bar.close()
        return c

    def _account(self, running, out, batch, bs, c, bar) -> None:
        running["loss"] += out.loss.item() * bs
        hit = out.logits.argmax(-1) == batch["labels"]  # unlabeled rows (label -100) never count
        running["correct"] += int(hit.sum()) * self._ctx.acc.num_processes
        running["n"] += bs
        bar.update(1)
        if c.step % self.cfg.log_every == 0:
            acc = self._ctx.acc
            if acc.num_processes > 1:  # metrics reduced over processes (each saw its share of the batch)
                t = acc.reduce(torch.tensor([running["loss"], running["correct"]], device=acc.device), "mean")
                running["loss"], running["correct"] = float(t[0]), float(t[1])
            line = {"step": c.step, "epoch": c.epoch, "loss": running["loss"] / running["n"],
                    "train_accuracy": running["correct"] / running["n"],
                    "lr": self._ctx.scheduler.get_last_lr()[0],
                    "examples_per_s": c.seen / max(c.train_time, 1e-9), **out.logs}
            running.update(loss=0.0, correct=0, n=0)
            bar.set_postfix(loss=f"{line['loss']:.4f}")
            self._log(line)

    def _save_state(self, c: Counters) -> None:
        from .storage.resume import save_state  # deferred: `advviz --help` must not load it

        x = self._ctx
        if not x.acc.is_main_process:
            return
        save_state(self.out_dir, model=x.core, extras=x.extras_core,
                   optimizer=x.optimizer, scheduler=x.scheduler, method=self.method,
                   counters=c.to_json(self.log), run_fingerprint=x.run)

    def _evaluate(self, c: Counters, final: bool = False) -> None:
        x, step = self._ctx, c.step
        m = evaluate(x.core, x.dev.texts, x.dev.labels)
        line = {"step": step, "epoch": c.epoch, "dev_accuracy": m["accuracy"], "dev_macro_f1": m["macro_f1"],
                "dev_loss": m["loss"]}
        eligible = final or self.method.checkpoint_eligible(step)
        if not eligible:
            line["eligible"] = False  # a warm-start model (CARL before L_D): logged, never kept as best
        self._log(line)
        main = x.acc.is_main_process  # every process evaluates the same dev set; only rank 0 writes
        if self.progress and main:
            tqdm.write(f"step {step}: dev accuracy {m['accuracy']:.4f} (loss {m['loss']:.4f})"
                       + ("" if eligible else f"; warm start, not kept as {self.method.name}"))
        if eligible and m["accuracy"] > c.best["dev_accuracy"]:
            c.best = {"dev_accuracy": m["accuracy"], "dev_macro_f1": m["macro_f1"], "dev_loss": m["loss"],
                         "steps": step, "epoch": c.epoch, "train_examples_seen": c.seen,
                         "train_examples_per_s": c.seen / max(c.train_time, 1e-9),
                         "train_seconds": c.train_time, "parameters": x.n_params, "method": self.method.name,
                         **({"extra_parameters": self.extra_parameters} if self.extra_parameters else {}),
                         **self.method.metrics()}
            if main:
                save_checkpoint(self.out_dir, x.core, x.run, c.best, self.log, x.extras_core)
        elif main:
            self._append_log_file(line)

    def _append_log_file(self, line: dict) -> None:
        if (self.out_dir / "train_log.jsonl").exists():  # else the first save writes the whole log
            with open(self.out_dir / "train_log.jsonl", "a", encoding="utf-8") as f:
                f.write(dumps(line) + "\n")

    # -- the stall mark -------------------------------------------------------------------------
    def _majority(self) -> float:
        if self._ctx.majority is None:
            self._ctx.majority = majority_share(self._ctx.dev.labels)
        return self._ctx.majority

    def _probe_chance(self, c: Counters) -> None:
        """Between the regular evaluations, the dev accuracy of a run whose latest evaluation was at
        chance (``probe_accuracy`` lines: never kept as a checkpoint, and evaluation draws no random
        numbers, so they change nothing a run trains or saves but its log). A run that learns stops
        being probed at its first probe above chance (and is probed again only if a later evaluation
        falls back); one that stalls is probed a twentieth of the run apart, which dates its stall
        to that resolution."""
        x = self._ctx
        m = evaluate(x.core, x.dev.texts, x.dev.labels)
        line = {"step": c.step, "epoch": c.epoch, "probe_accuracy": m["accuracy"]}
        self._log(line)
        if x.acc.is_main_process:
            self._append_log_file(line)

    def _finish(self, c: Counters) -> TrainResult:
        from .storage.resume import clear_state  # deferred: `advviz --help` must not load it

        best = c.best
        if best["dev_accuracy"] >= 0 and self._ctx.acc.is_main_process:
            chance = chance_record(self.log, self._majority(), c.step)
            best = {**best, "total_steps": c.step, "total_train_seconds": c.train_time,
                    "total_train_examples_per_s": c.seen / max(c.train_time, 1e-9), "chance": chance}
            if chance["stalled"] and self.progress:
                tqdm.write(f"advviz: warning: this run {stall_note(best)} (dev accuracy within "
                           f"{chance['margin']:.0%} of the majority class {chance['majority_share']:.3f}): it did not "
                           f"train as {self.method.name} does; try another --seed or a lower --lr")
            write_json_atomic(self.out_dir / "metrics.json", best)
            clear_state(self.out_dir)  # the run is complete: its resume state is no longer needed
        return TrainResult(self.out_dir, best, self.log, self._ctx.acc.is_main_process)


def train(cfg: TrainConfig, method: Method | None = None, model_options: ModelOptions = ModelOptions(),
          progress: bool = True) -> TrainResult:
    return Trainer(cfg, method, model_options, progress).fit()
