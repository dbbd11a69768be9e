"""One explicit training loop for every method and model family, built on Accelerate.

Accelerate handles device placement, mixed precision and distribution; the loop itself stays
here, visible: batch -> ``method.train_step`` (which calls ``backward``) -> clip -> step. The best
dev-accuracy checkpoint is written atomically after each evaluation.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .checkpoint import save_checkpoint, write_json_atomic
from .data import TextDataset, load_splits
from .errors import AdvvizError
from .evaluate import evaluate
from .methods import Method, build_method
from .models import ModelOptions, build_model

DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``advviz train`` takes besides the method's own hyperparameters."""

    dataset: str = "sst2-sent"
    arch: str = "lstm"
    method: str = "baseline"
    epochs: int = 3
    max_train: int | None = None  # use a seeded subset of the train split
    max_steps: int | None = None  # stop after this many optimiser steps
    max_eval: int | None = None  # evaluate on a seeded subset of dev
    batch_size: int = 32
    lr: float | None = None  # RNN 1e-3 (Adam, both papers), transformers 5e-5
    weight_decay: float = 0.0
    warmup: float = 0.1  # transformers only: linear warm-up share, then linear decay
    grad_clip: float | None = None  # RNN 4.0 (SPGD App. B), transformers 1.0
    seed: int = 0
    out: str | None = None
    data_dir: str | None = None
    text_col: str | None = None
    label_col: str | None = None
    mixed_precision: str = "no"  # no | fp16 | bf16 (GPU)
    log_every: int = 20
    eval_every: int | None = None  # steps; default once per epoch

    def __post_init__(self):
        for name in ("epochs", "batch_size", "log_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive")
        for name in ("max_train", "max_steps", "max_eval", "eval_every"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive")
        if self.lr is not None and not (0 < self.lr < 1):
            raise ValueError("--lr must be in (0, 1)")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError("--mixed-precision must be no, fp16 or bf16")

    @property
    def is_rnn(self) -> bool:
        return self.arch in ("lstm", "bigru")


class _Indexed(torch.utils.data.Dataset):
    def __init__(self, ds: TextDataset):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return self.ds.texts[i], self.ds.labels[i], i


def make_collate(tokenizer):
    def collate(items):
        texts, labels, idx = zip(*items)
        batch = tokenizer.batch(list(texts))
        batch["labels"] = torch.tensor(labels, dtype=torch.long)
        batch["index"] = torch.tensor(idx, dtype=torch.long)  # example ids (CARL memory banks)
        return batch

    return collate


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


class Trainer:
    """``Trainer(cfg, method).fit()``: builds data and model, trains, keeps the best checkpoint."""

    def __init__(self, cfg: TrainConfig, method: Method | None = None, model_options: ModelOptions = ModelOptions(),
                 progress: bool = True, callback=None):
        self.cfg, self.opts = cfg, model_options
        self.method = method or build_method(cfg.method)
        self.progress = progress
        self.callback = callback  # called with each log line (the app's live progress)
        self.out_dir = Path(cfg.out) if cfg.out else default_out_dir(cfg)
        self.log: list[dict] = []

    def _log(self, line: dict) -> None:
        self.log.append(line)
        if self.callback is not None:
            self.callback(line)

    def fit(self) -> TrainResult:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        cfg = self.cfg
        set_seed(cfg.seed)  # dropout and init draw from the global RNGs; data order has its own generator
        splits = load_splits(cfg.dataset, cfg.data_dir, cfg.text_col, cfg.label_col)
        train = splits["train"].subset(cfg.max_train, cfg.seed)
        if "dev" not in splits:
            raise AdvvizError(f"data set '{cfg.dataset}' has no dev split to select checkpoints on")
        dev = splits["dev"].subset(cfg.max_eval, cfg.seed)
        if len(train) == 0:
            raise AdvvizError("the train split is empty")

        model, model_info = build_model(cfg.arch, train.texts, train.num_labels, self.opts, cfg.seed)
        accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())
        self.method.setup(model, train)
        extras = self.method.extra_modules()
        params = list(model.parameters()) + [p for m in extras.values() for p in m.parameters()]
        params = list({id(p): p for p in params}.values())  # tied weights appear once
        lr = cfg.lr or (1e-3 if cfg.is_rnn else 5e-5)
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(cfg.seed)
        loader = DataLoader(_Indexed(train), batch_size=cfg.batch_size, shuffle=True, generator=gen,
                            collate_fn=make_collate(model.tokenizer), drop_last=False)
        steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
        total = min(cfg.max_steps or 10**12, cfg.epochs * steps_per_epoch)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total, cfg.warmup, cfg.is_rnn))
        model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
        extras = {k: accelerator.prepare(v) for k, v in extras.items()}
        clip = cfg.grad_clip if cfg.grad_clip is not None else (4.0 if cfg.is_rnn else 1.0)
        core = accelerator.unwrap_model(model)

        run_config = {
            "train": asdict(cfg), "method": self.method.describe(), "model_options": asdict(self.opts),
            "data": {"name": cfg.dataset, "label_names": train.label_names, "label_mapping": train.label_mapping,
                     "train_examples": len(train), "dev_examples": len(dev), "split_info": train.split_info,
                     "dev_split_info": dev.split_info, "skipped_empty": train.skipped_empty},
            "model_info": model_info, "lr": lr, "grad_clip": clip,
        }
        best = {"dev_accuracy": -1.0}
        step, seen, train_time = 0, 0, 0.0
        eval_every = cfg.eval_every or steps_per_epoch
        n_params = sum(p.numel() for p in params)  # tied weights (RAR decoder = embedding) counted once
        core_ids = {id(p) for p in core.parameters()}
        self.extra_parameters = {k: sum(p.numel() for p in m.parameters() if id(p) not in core_ids)
                                 for k, m in extras.items()}  # what each head adds (CARL paper Table 7)
        bar = tqdm(total=total, desc=f"train {cfg.method}", disable=not self.progress or not accelerator.is_main_process)
        running = {"loss": 0.0, "correct": 0, "n": 0}
        done = False
        for epoch in range(cfg.epochs):
            for batch in loader:
                model.train()
                for m in extras.values():
                    m.train()
                t0 = time.perf_counter()
                out = train_one_step(self.method, model, batch, optimizer, scheduler, accelerator, params, clip)
                if out is None:
                    bar.close()
                    where = (f"the last good checkpoint (step {best.get('steps')}) is kept at {self.out_dir}"
                             if best["dev_accuracy"] >= 0 else "no checkpoint had been written yet")
                    raise AdvvizError(f"training diverged: loss is nan or inf at step {step + 1}; {where}. "
                                      f"Try a lower --lr or a smaller --epsilon")
                step += 1
                self.method.on_step_end(model, step)
                train_time += time.perf_counter() - t0
                bs = batch["labels"].shape[0]
                seen += bs
                running["loss"] += out.loss.item() * bs
                running["correct"] += int((out.logits.argmax(-1) == batch["labels"]).sum())
                running["n"] += bs
                bar.update(1)
                if step % cfg.log_every == 0:
                    line = {"step": step, "epoch": epoch, "loss": running["loss"] / running["n"],
                            "train_accuracy": running["correct"] / running["n"], "lr": scheduler.get_last_lr()[0],
                            "examples_per_s": seen / train_time, **out.logs}
                    running = {"loss": 0.0, "correct": 0, "n": 0}
                    bar.set_postfix(loss=f"{line['loss']:.4f}")
                    self._log(line)
                if step % eval_every == 0 or step == total:
                    best = self._evaluate(core, dev, extras, run_config, best, step, epoch, seen, train_time, n_params,
                                          accelerator)
                if step >= total:
                    done = True
                    break
            if done:
                break
        bar.close()
        if best["dev_accuracy"] >= 0 and accelerator.is_main_process:
            best = {**best, "total_steps": step, "total_train_seconds": train_time,
                    "total_train_examples_per_s": seen / max(train_time, 1e-9)}
            write_json_atomic(self.out_dir / "metrics.json", best)
        return TrainResult(self.out_dir, best, self.log)

    def _evaluate(self, core, dev, extras, run_config, best, step, epoch, seen, train_time, n_params, accelerator):
        m = evaluate(core, dev.texts, dev.labels)
        line = {"step": step, "epoch": epoch, "dev_accuracy": m["accuracy"], "dev_macro_f1": m["macro_f1"],
                "dev_loss": m["loss"]}
        self._log(line)
        if self.progress and accelerator.is_main_process:
            tqdm.write(f"step {step}: dev accuracy {m['accuracy']:.4f} (loss {m['loss']:.4f})")
        if m["accuracy"] > best["dev_accuracy"] and accelerator.is_main_process:
            best = {"dev_accuracy": m["accuracy"], "dev_macro_f1": m["macro_f1"], "dev_loss": m["loss"],
                    "steps": step, "epoch": epoch, "train_examples_seen": seen,
                    "train_examples_per_s": seen / max(train_time, 1e-9), "train_seconds": train_time,
                    "parameters": n_params, "method": self.method.name,
                    **({"extra_parameters": self.extra_parameters} if self.extra_parameters else {})}
            extra_modules = {k: accelerator.unwrap_model(v) for k, v in extras.items()}
            save_checkpoint(self.out_dir, core, run_config, best, self.log, extra_modules)
        else:
            with open(self.out_dir / "train_log.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
        return best


def train(cfg: TrainConfig, method: Method | None = None, model_options: ModelOptions = ModelOptions(),
          progress: bool = True) -> TrainResult:
    return Trainer(cfg, method, model_options, progress).fit()
