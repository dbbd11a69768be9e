"""2-D maps of sentence representations, original and adversarial (the CARL cluster view).

    df, metrics = project_representations(model, texts, labels, attack="freelb", reducer="umap")

``df`` has one row per point: ``x, y, label, label_name, pred, pred_name, prob, correct, kind``
(``orig`` | ``adv``), ``pair`` (the example index an original shares with its adversarial point),
``text``, ``orig_pred``, ``adv_pred``, ``flipped``. Originals and adversarial points are reduced
*together*, so distances in the map are comparable. ``metrics`` holds silhouette by label (2-D and
full space), the mean orig–adv distance in the map and in the full representation space
(Euclidean and cosine), accuracies, the reducer actually used and any fallback message.

:class:`Projector` has scikit-learn's shape (fit / transform / fit_transform). UMAP needs more
points than its ``n_neighbors``: with fewer it falls back to PCA and says so in ``message_``.
t-SNE cannot embed new points (``transform`` raises); its perplexity is lowered for small inputs.

Results are cached on disk (``cache_dir``), keyed by the SHA-256 of the checkpoint's weights and
every parameter: a parquet table plus a JSON file. Never pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import closing
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ..errors import AdvvizError
from ..storage.jsonio import dumps
from ..storage.outdir import replace_atomically
from ..storage.outputs import write_output
from .attacks import Clean, attack_batches, check_examples, prepare_attack

REDUCERS = ("umap", "pca", "tsne")
CACHE_VERSION = 1
Progress = Callable[[float, str], None]


class Projector:
    """Reduce <float>[N,H] to <float>[N,2] with UMAP, PCA or t-SNE, seeded."""

    def __init__(self, reducer: str = "umap", n_components: int = 2, seed: int = 0, n_neighbors: int = 15,
                 min_dist: float = 0.1, perplexity: float = 30.0):
        if reducer not in REDUCERS:
            raise AdvvizError(f"unknown reducer '{reducer}'; use one of {', '.join(REDUCERS)}")
        self.reducer, self.n_components, self.seed = reducer, n_components, seed
        self.n_neighbors, self.min_dist, self.perplexity = n_neighbors, min_dist, perplexity
        self.reducer_used_: str | None = None
        self.message_: str | None = None
        self._est = None

    def min_points(self, reducer: str | None = None) -> int:
        r = reducer or self.reducer
        return {"umap": self.n_neighbors + 1, "tsne": 4}.get(r, self.n_components)

    def _choose(self, n: int) -> str:
        if n < self.min_points("pca"):
            raise AdvvizError(f"need at least {self.min_points('pca')} points to project, got {n}")
        if self.reducer != "pca" and n < self.min_points():
            self.message_ = (f"{self.reducer.upper()} needs at least {self.min_points()} points"
                             f"{' (n_neighbors + 1)' if self.reducer == 'umap' else ''}, got {n}: using PCA instead")
            return "pca"
        return self.reducer

    def _build(self, used: str, n: int):
        if used == "pca":
            # optional and slow to import: loaded only when used
            from sklearn.decomposition import PCA

            return PCA(n_components=self.n_components, random_state=self.seed)
        if used == "tsne":
            from sklearn.manifold import TSNE  # optional and slow to import: loaded only when used

            perp = min(self.perplexity, max(1.0, (n - 1) / 3))
            if perp < self.perplexity:
                self.message_ = f"t-SNE perplexity lowered from {self.perplexity:g} to {perp:g} for {n} points"
            return TSNE(n_components=self.n_components, perplexity=perp, random_state=self.seed, init="pca")
        import umap  # numba JIT on the first call in a process: tens of seconds

        return umap.UMAP(n_components=self.n_components, n_neighbors=self.n_neighbors, min_dist=self.min_dist,
                         random_state=self.seed, n_jobs=1)

    def fit_transform(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        self.message_ = None
        used = self._choose(len(X))
        self._est = self._build(used, len(X))
        self.reducer_used_ = used
        return np.asarray(self._est.fit_transform(X), dtype=np.float64)

    def fit(self, X) -> "Projector":
        self.fit_transform(X)
        return self

    def transform(self, X) -> np.ndarray:
        if self._est is None:
            raise AdvvizError("Projector.transform called before fit")
        if self.reducer_used_ == "tsne":
            raise AdvvizError("t-SNE cannot place new points; use fit_transform on all points, or umap/pca")
        return np.asarray(self._est.transform(np.asarray(X, dtype=np.float32)), dtype=np.float64)


# --------------------------------------------------------------------------------------------
# representations


def representations(model, texts: list[str], labels: list[int], attack: str | None = None,
                    overrides: dict | None = None, seed: int = 0, batch_size: int = 32,
                    progress: Progress | None = None) -> dict[str, np.ndarray]:
    """Pooled sentence representations and logits, clean and (with ``attack``) adversarial."""
    core = model.classifier
    method = prepare_attack(core, attack, overrides, cache_dir=None)[0] if attack else Clean()
    n = len(texts)
    out = {"pooled": np.zeros((n, core.hidden_size), np.float32), "logits": np.zeros((n, core.num_labels), np.float32)}
    if attack:
        out.update(adv_pooled=np.zeros_like(out["pooled"]), adv_logits=np.zeros_like(out["logits"]))

    def report(done, total):
        if progress:
            progress(0.5 * done / max(total, 1), f"representations {done}/{total}")

    with closing(attack_batches(core, method, texts, labels, batch_size=batch_size, seed=seed,
                                progress=report)) as batches:
        for ab in batches:
            idx = ab.index
            out["pooled"][idx] = ab.clean.pooled.float().cpu().numpy()
            out["logits"][idx] = ab.clean.logits.float().cpu().numpy()
            if attack:
                out["adv_pooled"][idx] = ab.adv.pooled.float().cpu().numpy()
                out["adv_logits"][idx] = ab.adv.logits.float().cpu().numpy()
    return out


# --------------------------------------------------------------------------------------------
# metrics and table


def _silhouette(X: np.ndarray, labels: np.ndarray) -> float | None:
    # optional and slow to import: loaded only when used
    from sklearn.metrics import silhouette_score

    k = len(np.unique(labels))
    if k < 2 or k >= len(labels):
        return None
    return float(silhouette_score(X, labels))


def cluster_metrics(xy: np.ndarray, reps: dict[str, np.ndarray], labels: np.ndarray) -> dict:
    n = len(labels)
    pred = reps["logits"].argmax(-1)
    m = {"n": int(n), "accuracy": float(np.mean(pred == labels)),
         "silhouette_2d": _silhouette(xy[:n], labels), "silhouette_full": _silhouette(reps["pooled"], labels)}
    if "adv_pooled" in reps:
        a, b = reps["pooled"].astype(np.float64), reps["adv_pooled"].astype(np.float64)
        cos = np.sum(a * b, 1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
        adv_pred = reps["adv_logits"].argmax(-1)
        m.update({"adv_accuracy": float(np.mean(adv_pred == labels)), "flip_rate": float(np.mean(adv_pred != pred)),
                  "silhouette_2d_adv": _silhouette(xy[n:], labels),
                  "silhouette_full_adv": _silhouette(reps["adv_pooled"], labels),
                  "mean_distance_2d": float(np.mean(np.linalg.norm(xy[:n] - xy[n:], axis=1))),
                  "mean_euclidean_full": float(np.mean(np.linalg.norm(a - b, axis=1))),
                  "mean_cosine_full": float(np.mean(cos))})
    return m


def build_table(xy: np.ndarray, reps: dict, texts: list[str], labels: np.ndarray, label_names: list[str]) -> pd.DataFrame:
    n = len(labels)
    pred = reps["logits"].argmax(-1)
    probs = torch.softmax(torch.from_numpy(reps["logits"]), -1).numpy()
    adv = "adv_logits" in reps
    adv_pred = reps["adv_logits"].argmax(-1) if adv else pred
    parts = [("orig", reps["logits"], pred, probs)]
    if adv:
        parts.append(("adv", reps["adv_logits"], adv_pred, torch.softmax(torch.from_numpy(reps["adv_logits"]), -1).numpy()))
    frames = []
    for k, (kind, _, p, pr) in enumerate(parts):
        frames.append(pd.DataFrame({
            "x": xy[k * n:(k + 1) * n, 0], "y": xy[k * n:(k + 1) * n, 1], "label": labels.astype(np.int64),
            "label_name": [label_names[i] for i in labels], "pred": p.astype(np.int64),
            "pred_name": [label_names[i] for i in p], "prob": pr.max(-1).astype(np.float64),
            "correct": p == labels, "kind": kind, "pair": np.arange(n, dtype=np.int64), "text": list(texts),
            "orig_pred": pred.astype(np.int64), "adv_pred": adv_pred.astype(np.int64), "flipped": adv_pred != pred}))
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------
# cache


_HASHES: dict[tuple, str] = {}


def checkpoint_hash(directory: str | os.PathLike) -> str:
    """SHA-256 of the checkpoint's weights and config (memoised by path, size and mtime)."""
    d = Path(directory)
    files = [d / "model.safetensors", d / "config.json"]
    key = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file())
    if key not in _HASHES:
        h = hashlib.sha256()
        for f in files:
            if f.is_file():
                with open(f, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def cache_key(model, texts, labels, params: dict) -> str:
    h = hashlib.sha256()
    h.update(checkpoint_hash(model.directory).encode())
    h.update(json.dumps({"v": CACHE_VERSION, **params}, sort_keys=True, default=str).encode())
    for t in texts:
        h.update(t.encode("utf-8") + b"\x00")
    h.update(np.asarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()[:32]


def _cache_read(cache_dir: Path, key: str) -> tuple[pd.DataFrame, dict] | None:
    tab, meta = cache_dir / f"{key}.parquet", cache_dir / f"{key}.json"
    if not (tab.is_file() and meta.is_file()):
        return None
    try:
        return pd.read_parquet(tab), json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # a damaged cache entry is recomputed


def _cache_write(cache_dir: Path, key: str, df: pd.DataFrame, metrics: dict) -> None:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        # each file whole (a failed write leaves no temporary behind); a key names one content,
        # so the two need not change together
        replace_atomically(cache_dir / f"{key}.parquet", lambda tmp: df.to_parquet(tmp, index=False))
        replace_atomically(cache_dir / f"{key}.json",
                           lambda tmp: tmp.write_text(dumps(metrics, indent=2) + "\n", encoding="utf-8"))
    except OSError:
        pass  # caching is an optimisation: an unwritable cache directory is not an error


def default_cache_dir() -> Path:
    env = os.environ.get("ADVVIZ_CACHE_DIR")
    return (Path(env) if env else Path.home() / ".cache" / "advviz") / "projections"


# --------------------------------------------------------------------------------------------
# the one call the CLI and the app use


def project_representations(model, texts, labels, attack: str | None = None, overrides: dict | None = None,
                            reducer: str = "umap", seed: int = 0, cache_dir: str | Path | None = None,
                            progress: Progress | None = None) -> tuple[pd.DataFrame, dict]:
    """The projection table and its cluster metrics (see the module docstring)."""
    texts, labels = list(texts), np.asarray(labels, dtype=np.int64)
    if len(texts) != len(labels):
        raise AdvvizError(f"{len(texts)} texts but {len(labels)} labels")
    if reducer not in REDUCERS:
        raise AdvvizError(f"unknown reducer '{reducer}'; use one of {', '.join(REDUCERS)}")
    check_examples(model, texts, labels, allow_empty=True)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    params = {"attack": attack, "overrides": overrides if attack else {}, "reducer": reducer, "seed": seed}
    key = cache_key(model, texts, labels, params) if cache_dir else None
    if key:
        hit = _cache_read(Path(cache_dir), key)
        if hit is not None:
            if progress:
                progress(1.0, "loaded from cache")
            return hit[0], {**hit[1], "cached": True}
    reps = representations(model, texts, labels.tolist(), attack, overrides, seed, progress=progress)
    X = reps["pooled"] if attack is None else np.concatenate([reps["pooled"], reps["adv_pooled"]])
    proj = Projector(reducer, seed=seed)
    if progress:
        slow = " (the first UMAP call compiles with numba: ~30 s)" if reducer == "umap" else ""
        progress(0.55, f"reducing {len(X)} points with {reducer}{slow}")
    xy = proj.fit_transform(X)
    metrics = {**cluster_metrics(xy, reps, labels), "reducer_requested": reducer, "reducer": proj.reducer_used_,
               "fallback": proj.message_, "attack": attack, "overrides": params["overrides"], "seed": seed,
               "checkpoint": str(model.directory), "cache_key": key, "cached": False}
    df = build_table(xy, reps, texts, labels, list(model.label_names))
    if key:
        _cache_write(Path(cache_dir), key, df, metrics)
    if progress:
        progress(1.0, "done")
    return df, metrics


def write_table(df: pd.DataFrame, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write by extension: .parquet or .csv (temporary sibling + rename, never over a file advviz
    did not write unless ``overwrite``: :mod:`advviz.storage.outputs`)."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in (".parquet", ".csv"):
        raise AdvvizError(f"{path}: --out must end in .parquet or .csv")
    return write_output(path, lambda tmp: df.to_parquet(tmp, index=False) if ext == ".parquet"
                        else df.to_csv(tmp, index=False), overwrite=overwrite)
