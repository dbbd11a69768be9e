"""Adversary costs, as ratios measured in one run (issue #3, "Quality").

    python benchmarks/adversaries.py [--checkpoint DIR_OF_A_MINILM_CHECKPOINT] [--quick]

1. train-step time of FreeLB-K over the baseline step (target ≤ 1.1·K; ≤ 1.1·(K+1) with the
   clean pass), for the ``lstm`` family on real SST-2 sentences (batch 32) and for MiniLM;
2. ``inspect`` of a 30-token sentence with every attack on a warm MiniLM (target ≤ 0.5 s each);
3. batch discretization (moved_to + nearest) of 4,096 perturbed tokens over the MiniLM vocabulary:
   FAISS + neighbour table vs brute-force numpy (a per-token loop, and a vectorised version);
4. full neighbour-table build time for the MiniLM vocabulary (30,522 × 384, K = 15).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from advviz.methods import build_method  # noqa: E402
from advviz.methods.neighbors import NeighborIndex, discretize  # noqa: E402

SENTENCE = ("the film is a charming , often affecting journey through a story that never quite finds its "
            "footing but the acting is great and the ending is moving")  # ~30 tokens


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def step_ratios(model, batch, repeats: int) -> list[tuple[str, float, float]]:
    model.train()

    def run(name, over):
        method = build_method(name, over)
        method.setup(model)

        def step():
            model.zero_grad(set_to_none=True)
            method.train_step(model, batch, lambda loss: loss.backward())
        return timed(step, repeats)

    base = run("baseline", {})
    rows = [("baseline", base, 1.0)]
    for label, name, over in [("freelb K=2", "freelb", {"steps": 2}), ("freelb K=3", "freelb", {"steps": 3}),
                              ("freelb K=2 +clean", "freelb", {"steps": 2, "clean_loss": True}),
                              ("advt", "advt", {}), ("spgd", "spgd", {}), ("pgd K=3", "pgd", {})]:
        t = run(name, over)
        rows.append((label, t, t / base))
    model.eval()
    return rows


def lstm_model():
    from advviz.data import load_dataset
    from advviz.models import build_model

    ds = load_dataset("sst2-sent", "train").subset(2000, 0)
    model, _ = build_model("lstm", ds.texts, ds.num_labels)
    batch = model.tokenizer.batch(ds.texts[:32])
    batch["labels"] = torch.tensor(ds.labels[:32])
    return model, batch, (ds.texts[:16], ds.labels[:16])


def minilm_model(checkpoint: str | None):
    if checkpoint:
        import advviz

        return advviz.load(checkpoint)
    from advviz.models.transformer import HFEncoderClassifier

    core = HFEncoderClassifier.pretrained("minilm", 2).eval()
    return types.SimpleNamespace(classifier=core, name="minilm (untrained head)", directory=None,
                                 label_names=["negative", "positive"], reconstruct=lambda r, a: None)


def inspect_times(model, repeats: int) -> list[tuple[str, float]]:
    from advviz.analysis.inspection import inspect

    n = len(model.classifier.tokenizer.encode(SENTENCE)) - 2
    out = []
    for name, over in [("advt", {"epsilon": 1.0}), ("fgsm", {}), ("iadvt", {"epsilon": 1.0}),
                       ("spgd", {"epsilon": 1.0}), ("pgd", {}), ("freelb", {})]:
        out.append((f"{name} ({n} tokens)", timed(lambda: inspect(model, [SENTENCE], name, over), repeats)))
    return out


def brute_loop(E, unit, ids, delta, k):
    moved, near = np.empty(len(ids), np.int64), np.empty(len(ids), np.int64)
    for j, (i, d) in enumerate(zip(ids, delta)):
        sims = unit @ unit[i]
        sims[i] = -np.inf
        nb = np.argpartition(-sims, k)[:k]
        u = E[nb] - E[i]
        u /= np.linalg.norm(u, axis=1, keepdims=True) + 1e-12
        moved[j] = nb[np.argmax(u @ d)]
        near[j] = np.argmin(((E - (E[i] + d)) ** 2).sum(1))
    return moved, near


def brute_vectorised(E, unit, ids, delta, k, chunk=512):
    moved, near = [], []
    sq = (E**2).sum(1)
    for s in range(0, len(ids), chunk):
        i, d = ids[s: s + chunk], delta[s: s + chunk]
        sims = unit[i] @ unit.T
        sims[np.arange(len(i)), i] = -np.inf
        nb = np.argpartition(-sims, k, axis=1)[:, :k]
        u = E[nb] - E[i][:, None]
        u /= np.linalg.norm(u, axis=2, keepdims=True) + 1e-12
        moved.append(nb[np.arange(len(i)), np.einsum("nkd,nd->nk", u, d).argmax(1)])
        x = E[i] + d
        near.append(np.argmin(sq[None] - 2 * x @ E.T, axis=1))
    return np.concatenate(moved), np.concatenate(near)


def discretization(core, n_tokens: int, loop_sample: int, scale: float = 0.05):
    E_t = core.embedding_matrix().detach().float()
    E = E_t.numpy()
    unit = E / (np.linalg.norm(E, axis=1, keepdims=True) + 1e-12)
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, E.shape[0], n_tokens)
    delta = (rng.normal(size=(n_tokens, E.shape[1])) * scale).astype(np.float32)  # per-token ‖δ‖ ≈ scale·√D
    t0 = time.perf_counter()
    cos_idx = NeighborIndex(15, "cosine", core.tokenizer.special_ids).fit(E_t)
    l2_idx = NeighborIndex(1, "l2", core.tokenizer.special_ids).fit(E_t)
    fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    d = discretize(E_t, cos_idx, l2_idx, torch.from_numpy(ids), torch.from_numpy(delta))
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    discretize(E_t, cos_idx, l2_idx, torch.from_numpy(ids), torch.from_numpy(delta))
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    mv, nr = brute_vectorised(E, unit, ids, delta, 15)
    vec = time.perf_counter() - t0
    t0 = time.perf_counter()
    brute_loop(E, unit, ids[:loop_sample], delta[:loop_sample], 15)
    loop = (time.perf_counter() - t0) * n_tokens / loop_sample
    agree = float(np.mean(mv == d.moved_to.numpy())), float(np.mean(nr == d.nearest.numpy()))
    return fit, cold, warm, vec, loop, agree


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="a MiniLM checkpoint (default: MiniLM with an untrained head)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    args = ap.parse_args()
    reps = 2 if args.quick else 5
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cuda {torch.cuda.is_available()}")

    print("\n1. train step time / baseline step (lstm, SST-2 sentences, batch 32)")
    model, batch, (texts, labels) = lstm_model()
    for label, t, r in step_ratios(model, batch, reps * 2):
        print(f"   {label:20s} {t * 1000:8.1f} ms  ratio {r:5.2f}")
    m = minilm_model(args.checkpoint)
    core = m.classifier
    print("   MiniLM, batch 16 of the same sentences:")
    b = core.tokenizer.batch(texts)
    b["labels"] = torch.tensor(labels)
    for label, t, r in step_ratios(core, b, reps):
        print(f"   {label:20s} {t * 1000:8.1f} ms  ratio {r:5.2f}")

    print(f"\n2. inspect, warm {m.name} (median of {reps})")
    for label, t in inspect_times(m, reps):
        print(f"   {label:20s} {t:6.3f} s  {'ok' if t <= 0.5 else 'over the 0.5 s target'}")

    E = core.embedding_matrix()
    print(f"\n3. discretization of 4,096 perturbed tokens over the MiniLM vocabulary ({E.shape[0]} x {E.shape[1]})")
    # per-token ‖δ‖ ≈ 0.1 is the size FreeLB/PGD reach on MiniLM (ε 0.1-1 per sentence); ≈ 1 is a
    # stress case as far from the token as its nearest neighbours, where pruning cannot help
    for scale in (0.005, 0.05):
        fit, cold, warm, vec, loop, agree = discretization(core, 4096, 128 if args.quick else 256, scale)
        print(f"   per-token ||delta|| ~ {scale * E.shape[1] ** 0.5:.2f}")
        print(f"   FAISS index fit (both)          {fit:7.3f} s")
        print(f"   FAISS, neighbour rows computed  {cold:7.3f} s")
        print(f"   FAISS, neighbour table warm     {warm:7.3f} s")
        print(f"   numpy vectorised brute force    {vec:7.3f} s   speed-up cold {vec / cold:5.1f}x, warm {vec / warm:5.1f}x")
        print(f"   numpy per-token loop (extrap.)  {loop:7.3f} s   speed-up cold {loop / cold:5.1f}x, warm {loop / warm:5.1f}x")
        print(f"   agreement with brute force: moved_to {agree[0]:.4f}, nearest {agree[1]:.4f}")

    print("\n4. full neighbour table, MiniLM vocabulary, K = 15")
    t0 = time.perf_counter()
    NeighborIndex(15, "cosine", core.tokenizer.special_ids).fit(core.embedding_matrix()).build_table()
    print(f"   build {time.perf_counter() - t0:7.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
