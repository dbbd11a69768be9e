"""What one training step of each method costs, as a multiple of a plain (baseline) step on the same
model and batch, against the floor set by its forward/backward passes (issue 15).

    python benchmarks/method_costs.py [--arch minilm lstm] [--reps 15] [--batch-size 16] [--json FILE]
    python benchmarks/method_costs.py --arch minilm --profile carl      # top operators of one method
    python benchmarks/method_costs.py --only ascc dne                   # some methods only

For each method, plain and method steps are interleaved (plain, method, plain, method, ...) so machine
noise hits both alike; the ratio is median(method) / median(plain) over ``--reps`` pairs, after two
warm-up pairs. The PGD attack (``perturb``, no optimiser step) is compared with plain forward+backward
passes (no optimiser step either). Targets: 2-pass methods (advt, iadvt, spgd M=1, fgsm, vat) ≤ 2.3;
FreeLB K ≤ 1.1·K; CARL K ≤ 1.1·(K + 1); RAR K=2 ≤ 2.6; k-step PGD ≤ 1.1·(k + 1) passes; ASCC K ≤
1.1·(K + 2); DNE K ≤ 1.1·(K + 1).
Prints a table and one JSON object (also to ``--json``). Needs ../shared/data (or ADVVIZ_DATA_DIR).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from types import SimpleNamespace

import torch

# (label, method, overrides, target ratio, unit): unit "step" = a plain optimiser step; "pass" = a
# plain forward+backward pass (for the attack, which takes no optimiser step)
CASES = [
    ("advt", "advt", {}, 2.3, "step"),
    ("iadvt", "iadvt", {}, 2.3, "step"),
    ("spgd M=1", "spgd", {"steps": 1}, 2.3, "step"),
    ("fgsm", "fgsm", {}, 2.3, "step"),
    ("vat", "vat", {}, 2.3, "step"),
    ("freelb K=2", "freelb", {"steps": 2}, 2.2, "step"),
    ("freelb K=3", "freelb", {"steps": 3}, 3.3, "step"),
    ("carl K=2", "carl", {"steps": 2, "carl_start": "0"}, 3.3, "step"),
    ("rar K=2", "rar", {"steps": 2}, 2.6, "step"),
    ("pgd attack k=3", "pgd", {"steps": 3}, 4.4, "pass"),
    # ASCC K: K passes to ŵ + the clean and hull passes (+ a no-grad forward for p(x)): 1.1·(K + 2)
    ("ascc K=5", "ascc", {"steps": 5}, 7.7, "step"),
    # DNE K: K + 1 forward+backward passes (the Dirichlet logits' gradient rides on each): 1.1·(K + 1)
    ("dne K=3", "dne", {"steps": 3}, 4.4, "step"),
]


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def stepper(model, method, batch, train_data, attack: bool = False):
    """A closure running one step of ``method`` (a train step with its optimiser, or an attack)."""
    from accelerate import Accelerator

    from advviz.train import train_one_step

    model = copy.deepcopy(model)
    method.setup(model, train_data, seed=0)
    if attack:
        model.eval()
        gen = torch.Generator().manual_seed(0)
        return lambda: method.perturb(model, batch, gen)
    extras = list(method.extra_modules().values())
    params = list({id(p): p for m in [model, *extras] for p in m.parameters()}.values())
    acc = Accelerator(cpu=True)
    opt = torch.optim.AdamW(params, lr=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    for m in [model, *extras]:
        m.train()
    return lambda: train_one_step(method, model, batch, opt, sched, acc, params, 1.0)


def plain_pass(model, batch):
    """One forward+backward pass of the clean loss, no optimiser (the attack's unit)."""
    import torch.nn.functional as F

    model = copy.deepcopy(model).eval()

    def run():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(batch["input_ids"], batch["attention_mask"]).logits, batch["labels"]).backward()

    return run


def ratio(a, b, reps: int) -> tuple[float, float, float]:
    """(median a, median b, median a / median b) over interleaved runs, after 2 warm-up pairs."""
    for _ in range(2):
        a(), b()
    ta, tb = [], []
    for _ in range(reps):
        tb.append(timed(b))
        ta.append(timed(a))
    return statistics.median(ta), statistics.median(tb), statistics.median(ta) / statistics.median(tb)


def profile(model, method, batch, train_data, attack: bool) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as prof

    run = stepper(model, method, batch, train_data, attack)
    run(), run()
    with prof(activities=[ProfilerActivity.CPU]) as p:
        for _ in range(3):
            run()
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", nargs="+", default=["minilm", "lstm"])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--json", default=None)
    ap.add_argument("--profile", default=None, help="print the top operators of this case's label or method")
    ap.add_argument("--only", nargs="+", default=None, help="run only these methods (plain steps still measured)")
    args = ap.parse_args()
    from transformers.utils import logging as hf_logging

    from advviz.config import method_preset
    from advviz.data import load_dataset
    from advviz.methods import METHODS, build_method
    from advviz.models import build_model

    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    ds = load_dataset("sst2", "dev").subset(args.batch_size, 0)
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "batch_size": args.batch_size,
           "reps": args.reps, "rows": []}
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch_size}, reps {args.reps}")
    # the vocabulary of a real run (an LSTM's is built from its training texts): RAR's V-way head and
    # the neighbour tables of SPGD/iAdvT cost what they cost in training, not on the batch's 300 words
    # (and, for the LSTM, CARL's banks and its m ≈ 1,600 negatives of a real run; MiniLM keeps the
    # batch as its training set: filling banks over 6,920 sentences would take minutes of warm-up)
    full = load_dataset("sst2-sent", "train")
    for arch in args.arch:
        model, _ = build_model(arch, full.texts, 2)
        train_data = SimpleNamespace(texts=full.texts, labels=full.labels) if arch in ("lstm", "bigru") \
            else SimpleNamespace(texts=ds.texts, labels=ds.labels)
        batch = model.tokenizer.batch(ds.texts)
        batch["labels"], batch["index"] = torch.tensor(ds.labels), torch.arange(len(ds))
        plain_step = stepper(model, build_method("baseline"), batch, train_data)
        print(f"\n{arch} (sequence length {batch['input_ids'].shape[1]})")
        print(f"  {'method':16s} {'ms':>8s} {'plain ms':>9s} {'ratio':>7s} {'target':>7s}")
        for label, name, overrides, target, unit in CASES:
            if name not in METHODS or (args.only and name not in args.only):
                continue
            method = build_method(name, {**method_preset(name, arch), **overrides})
            attack = unit == "pass"
            if args.profile in (label, name):
                profile(model, method, batch, train_data, attack)
            run = stepper(model, method, batch, train_data, attack)
            t, tp, r = ratio(run, plain_pass(model, batch) if attack else plain_step, args.reps)
            ok = r <= target
            print(f"  {label:16s} {t * 1e3:8.1f} {tp * 1e3:9.1f} {r:7.2f} {target:7.2f} {'ok' if ok else 'ABOVE'}")
            out["rows"].append({"arch": arch, "method": label, "ms": t * 1e3, "plain_ms": tp * 1e3, "ratio": r,
                                "target": target, "unit": unit, "within_target": ok})
    print(json.dumps(out))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
