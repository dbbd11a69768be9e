"""Our baseline training step vs a minimal hand-written transformers+torch loop, same model & batch.

    python benchmarks/train_step.py [--reps 10] [--batch-size 32]

Steps are interleaved (ours, hand, ours, hand, ...) so machine noise hits both alike; the printed
ratio is median(ours) / median(hand) (target <= 1.05). Also prints examples/s of our step for
lstm and minilm. Needs ../shared/data (or ADVVIZ_DATA_DIR).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F


def _batch(model, texts, labels):
    b = model.tokenizer.batch(texts)
    b["labels"] = torch.tensor(labels)
    b["index"] = torch.arange(len(texts))
    return b


def ours_stepper(model, batch):
    from accelerate import Accelerator

    from advviz.methods.baseline import Baseline
    from advviz.train import train_one_step

    acc = Accelerator(cpu=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    model, opt, sched = acc.prepare(model, opt, sched)
    params, method = list(model.parameters()), Baseline()
    model.train()
    return lambda: train_one_step(method, model, batch, opt, sched, acc, params, 1.0)


def hand_stepper(model, batch):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = F.cross_entropy(logits, batch["labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def compare(model, batch, reps: int) -> tuple[float, float]:
    ours, hand = ours_stepper(copy.deepcopy(model), batch), hand_stepper(copy.deepcopy(model), batch)
    for _ in range(2):  # warm-up
        ours(), hand()
    t_ours, t_hand = [], []
    for _ in range(reps):
        t_ours.append(timed(ours))
        t_hand.append(timed(hand))
    return statistics.median(t_ours), statistics.median(t_hand)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    from transformers.utils import logging as hf_logging

    from advviz.data import load_dataset
    from advviz.models import build_model

    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    ds = load_dataset("sst2", "dev").subset(args.batch_size, 0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch_size}, reps {args.reps}")
    for arch in ("minilm", "lstm"):
        model, _ = build_model(arch, ds.texts, 2)
        batch = _batch(model, ds.texts, ds.labels)
        t_ours, t_hand = compare(model, batch, args.reps)
        print(f"{arch:7s} ours {t_ours * 1e3:8.1f} ms/step  hand-written {t_hand * 1e3:8.1f} ms/step  "
              f"ratio {t_ours / t_hand:.3f}  ({args.batch_size / t_ours:.0f} examples/s, seq len "
              f"{batch['input_ids'].shape[1]})")


if __name__ == "__main__":
    main()
