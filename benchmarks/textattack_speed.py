"""Attack speed of the TextAttack recipes: examples/s (and queries/s) of each recipe on one trained
LSTM and the same sst2-sent dev sentences (issue 28: pwws, textfooler-cf, textfooler-glove,
deepwordbug).

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv-textattack/bin/python benchmarks/textattack_speed.py \
        [--checkpoint DIR] [--n 50] [--recipes pwws,textfooler-cf,textfooler-glove,deepwordbug] [--json FILE]

Without ``--checkpoint`` an LSTM baseline is trained first into a temporary folder (GloVe 50-d,
``--max-train`` sentences, default 2,000, 2 epochs, seed 0), so that attacks have correct
predictions to flip. The sentences are ``ds.subset(n, 0)`` of the dev split, the seeded subset
``advviz eval --max-examples n`` attacks. Each recipe is built once first (``build_seconds``: the
one-off cost of TextAttack's recipe and its resources — the substitution sets, GloVe, loading the
WordNet corpus and building it when it is not built yet), so the run that follows measures the
attack loop: ``examples_per_second`` (wall clock, TextAttack's loop alone) and
``examples_per_cpu_second`` (examples / CPU seconds of this process over the whole run: the figure
to compare on a shared machine, where the wall clock also counts other processes' turns; run with
``OMP_NUM_THREADS=1`` so that one CPU second is one second of one core).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import advviz
from advviz.analysis import discrete


def train_lstm(out: Path, data_dir, max_train: int) -> Path:
    from advviz.methods import build_method
    from advviz.train import TrainConfig, Trainer

    cfg = TrainConfig(dataset="sst2-sent", arch="lstm", epochs=2, max_train=max_train, max_eval=200, out=str(out),
                      data_dir=data_dir, seed=0)
    Trainer(cfg, build_method("baseline"), progress=False).fit()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--recipes", default="pwws,textfooler-cf,textfooler-glove,deepwordbug")
    p.add_argument("--max-train", type=int, default=2000)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args()
    ckpt = args.checkpoint or train_lstm(Path(tempfile.mkdtemp(prefix="advviz-ta-speed-")) / "lstm", args.data_dir,
                                         args.max_train)
    model = advviz.load(ckpt)
    ds = model.examples("sst2-sent", "dev", args.data_dir).subset(args.n, 0)
    rows = []
    print(f"{'recipe':<18} {'examples/s':>10} {'ex/CPU-s':>8} {'queries/s':>10} {'queries':>8} {'accuracy':>8} {'clean':>6} "
          f"{'success':>7} {'build s':>7}")
    for recipe in [r.strip() for r in args.recipes.split(",") if r.strip()]:
        t0 = time.perf_counter()
        discrete.build(model, recipe, data_dir=args.data_dir)  # resources loaded (and cached) before timing
        build_seconds = time.perf_counter() - t0
        c0 = time.process_time()
        row = discrete.run_textattack(model, ds.texts, ds.labels, recipe, seed=0, data_dir=args.data_dir)["row"]
        row["cpu_seconds"] = time.process_time() - c0
        row["examples_per_cpu_second"] = row["n"] / row["cpu_seconds"]
        row["build_seconds"] = build_seconds
        rows.append({k: row.get(k) for k in ("name", "n", "examples_per_second", "queries_per_second", "mean_queries",
                                             "clean_accuracy", "accuracy", "attack_success_rate", "seconds",
                                             "cpu_seconds", "examples_per_cpu_second", "build_seconds",
                                             "batch_size")})
        asr = "-" if row["attack_success_rate"] is None else f"{row['attack_success_rate']:.3f}"
        print(f"{recipe:<18} {row['examples_per_second']:>10.2f} {row['examples_per_cpu_second']:>8.2f} "
              f"{row['queries_per_second']:>10.0f} "
              f"{row['mean_queries'] or 0:>8.1f} {row['accuracy']:>8.3f} {row['clean_accuracy']:>6.3f} {asr:>7} "
              f"{row['build_seconds']:>7.1f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"checkpoint": str(ckpt), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
