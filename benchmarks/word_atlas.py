"""Cost of the word atlas against ``advviz eval --attack``, measured side by side in one run (issue 17).

    python benchmarks/word_atlas.py [--checkpoint models/lstm-sst2-sent-baseline-s0] [--attack spgd]
                                    [--split dev] [--repeats 3]

On the same checkpoint, split and attack (family preset, seed 0, batches of 32), alternating:

- eval:  what ``advviz eval DIR --attack A`` computes: the clean evaluation and
         ``evaluate_under_attack`` (one attack pass per batch);
- atlas: what ``advviz words DIR --attack A --no-cache`` computes: ``word_atlas`` without the disk
         cache (the attack pass per batch, the discretization of every moved token, the training-set
         frequencies and the aggregation).

Model loading and process start are common to both and left out. Prints the median of each, the
ratio atlas / eval (target ≤ 1.5), the ratio to eval's attack pass alone (without its clean
evaluation: the stricter comparison) and the time of a second request served from the disk cache.
Default checkpoint: ``advviz train --dataset sst2-sent --arch lstm --method baseline``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import advviz  # noqa: E402
from advviz.analysis.robustness import evaluate_under_attack  # noqa: E402
from advviz.analysis.words import word_atlas  # noqa: E402
from advviz.evaluate import evaluate  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default="models/lstm-sst2-sent-baseline-s0")
    ap.add_argument("--dataset", default=None, help="default: the checkpoint's")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--attack", default="spgd")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = advviz.load(args.checkpoint)
    name = args.dataset or model.config["data"]["name"]
    ds = model.examples(name, args.split)
    print(f"{args.checkpoint}: {model.config['model'].get('arch')} · {name}/{args.split} ({len(ds)} sentences) · "
          f"attack {args.attack} · torch threads {torch.get_num_threads()}")

    t_pass: list[float] = []

    def run_eval():
        evaluate(model.classifier, ds.texts, ds.labels)
        t0 = time.perf_counter()
        out = evaluate_under_attack(model, ds.texts, ds.labels, args.attack)
        t_pass.append(time.perf_counter() - t0)
        return out

    def run_atlas(cache_dir=None):
        return word_atlas(model, ds.texts, ds.labels, args.attack, dataset=name, split=args.split, cache_dir=cache_dir)

    run_eval(), run_atlas()  # warm-up: neighbour tables, lazy imports, allocator
    t_eval, t_atlas = [], []
    for r in range(args.repeats):
        for label, fn, times in (("eval", run_eval, t_eval), ("atlas", run_atlas, t_atlas)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        print(f"  round {r + 1}: eval {t_eval[-1]:.2f} s   atlas {t_atlas[-1]:.2f} s   ratio {t_atlas[-1] / t_eval[-1]:.2f}")
    me, ma = statistics.median(t_eval), statistics.median(t_atlas)
    with tempfile.TemporaryDirectory() as tmp:
        first = run_atlas(tmp)
        t0 = time.perf_counter()
        second = run_atlas(tmp)
        t_cached = time.perf_counter() - t0
    assert not first["cached"] and second["cached"] and second["words"] == first["words"]
    mp = statistics.median(t_pass[1:])  # the warm-up's pass left out
    print(f"median: eval --attack {me:.2f} s (its attack pass alone {mp:.2f} s), atlas {ma:.2f} s")
    print(f"ratio atlas / eval --attack: {ma / me:.2f} (target <= 1.5); atlas / eval's attack pass alone: {ma / mp:.2f}")
    print(f"second request with the same settings: {t_cached * 1000:.0f} ms (served from the disk cache)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
