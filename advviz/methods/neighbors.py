"""Nearest vocabulary neighbours with FAISS, and the discretization of perturbed tokens.

    index = NeighborIndex(k=15, metric="cosine").fit(matrix)   # matrix <float>[V,D]
    scores, ids = index.query(vectors, k)                      # <float32>[N,k], <int64>[N,k]
    table = index.neighbors_of(token_ids)                      # <long>[N,K], self excluded

``metric="cosine"`` is an exact ``IndexFlatIP`` over L2-normalised rows (``"l2"``: ``IndexFlatL2``);
a GPU index is used when ``faiss.get_num_gpus() > 0``. Neighbour rows are computed lazily, only
for the token ids asked for, and memoised in a <long>[V,K] table (−1 = not computed yet), so an
``inspect`` of one sentence queries ~30 rows, while ``build_table()`` fills every row (what the
benchmark times). Rows listed in ``exclude`` (padding, [CLS], [SEP], <unk>, [unusedN]: see
``excluded_ids``) are never neighbours.

On disk (``save``/``load``) the table lives in a safetensors file together with a fingerprint of
the embedding matrix it was computed from; a mismatching fingerprint means "stale, recompute".
A file is never trusted as it is (it may come with a checkpoint from elsewhere): its shape, type
and ids are validated on load (:func:`valid_table`), and each row is checked against a fresh
query before its first use; one differing row discards the file's rows. Never pickle.

Discretization (SPGD paper Fig. 2): for a token i with embedding vᵢ and perturbation δᵢ,
``moved_to`` = argmaxₖ cos(δᵢ, uᵢₖ) over the unit directions uᵢₖ = (v_nₖ − vᵢ)/‖v_nₖ − vᵢ‖ to its K
neighbours (the "first word"); ``nearest`` = the vocabulary entry nearest (Euclidean) to vᵢ + δᵢ
(the "second word", in parentheses in the figure).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import AdvvizError
from ..limits import check_fits
from ..storage.outdir import replace_atomically

EPS = 1e-12


def _np32(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def fingerprint(matrix) -> str:
    """Short hash of an embedding matrix (shape + bytes): detects a stale cached table."""
    m = _np32(matrix)
    h = hashlib.blake2b(m.tobytes(), digest_size=12)
    h.update(str(m.shape).encode())
    return h.hexdigest()


class NeighborIndex:
    """Exact K-nearest-neighbour search over a vocabulary's embedding matrix (scikit-learn shape)."""

    def __init__(self, k: int = 15, metric: str = "cosine", exclude=(), use_gpu: bool | None = None):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if metric not in ("cosine", "l2"):
            raise ValueError(f"metric must be cosine or l2, got {metric!r}")
        self.k, self.metric, self.exclude = k, metric, frozenset(int(i) for i in exclude)
        self.use_gpu = use_gpu
        self.index = None
        self.ids: np.ndarray | None = None  # <int64>[V'] row of the index -> vocabulary id
        self.table: torch.Tensor | None = None  # <long>[V,K], -1 where not computed yet
        self.fingerprint: str | None = None
        self.dirty = False  # table rows computed since the last save/load
        self.unverified: torch.Tensor | None = None  # <bool>[V] rows read from disk, not yet checked
        self.cache_rejected = False  # a cache file's rows differed from a fresh query

    # -- building -------------------------------------------------------------------------------
    def fit(self, matrix) -> "NeighborIndex":
        import faiss  # optional and slow to import: loaded only when used

        # faiss 1.15 defaults to its non-BLAS kernel below 128,000 queries, ~5x slower for the
        # tens of queries of one `inspect`; 20 is faiss's classic threshold
        faiss.cvar.distance_compute_blas_threshold = min(faiss.cvar.distance_compute_blas_threshold, 20)
        m = _np32(matrix)  # (V, D)
        V, D = m.shape
        keep = np.array([i for i in range(V) if i not in self.exclude], dtype=np.int64)  # (V',)
        if len(keep) == 0:
            raise AdvvizError("the vocabulary has no words to move towards (every entry is padding, a special "
                              "token or <unk>); train with a lower --min-freq")
        if self.k > len(keep):
            raise AdvvizError(f"--k {self.k} is larger than the vocabulary ({len(keep):,} words that can be "
                              f"neighbours); use --k {min(len(keep), 15)}")
        check_fits(V * self.k * 8, f"a neighbour table of {V:,} × {self.k:,} ids", "lower --k")
        rows = m[keep]
        if self.metric == "cosine":
            rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), EPS)
            index = faiss.IndexFlatIP(D)
        else:
            index = faiss.IndexFlatL2(D)
        gpu = self.use_gpu if self.use_gpu is not None else faiss.get_num_gpus() > 0
        if gpu and hasattr(faiss, "StandardGpuResources"):
            self._res = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._res, 0, index)
        index.add(np.ascontiguousarray(rows))
        self.index, self.ids, self.vocab_size = index, keep, V
        self.table = torch.full((V, self.k), -1, dtype=torch.long)  # (V, K)
        self.fingerprint, self.dirty = fingerprint(m), False
        self._matrix = m
        return self

    def query(self, vectors, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores <float32>[N,k], vocabulary ids <int64>[N,k]) best first. Scores are cosine
        similarities (metric cosine) or squared L2 distances (metric l2)."""
        if self.index is None:
            raise RuntimeError("NeighborIndex.query before fit")
        q = _np32(vectors).reshape(-1, self._matrix.shape[1])  # (N, D)
        if self.metric == "cosine":
            q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), EPS)
        k = min(k or self.k, len(self.ids))
        scores, rows = self.index.search(np.ascontiguousarray(q), k)  # (N, k) each
        return scores, self.ids[np.maximum(rows, 0)]

    def neighbors_of(self, token_ids) -> torch.Tensor:
        """<long>[N,K]: the K nearest vocabulary entries of each token id, itself excluded."""
        ids = torch.as_tensor(token_ids, dtype=torch.long).reshape(-1)  # (N,)
        missing = torch.unique(ids[self.table[ids, 0] < 0])
        if len(missing):
            self._compute_rows(missing)
        if self.unverified is not None:
            check = torch.unique(ids[self.unverified[ids]])
            if len(check):
                self._verify_rows(check)
        return self.table[ids]  # (N, K)

    def _verify_rows(self, token_ids: torch.Tensor) -> None:
        """Rows read from a cache file are checked against a fresh query before their first use;
        one row that differs discards every row the file supplied (they are recomputed as needed),
        so a tampered or foreign table can never name a false neighbour."""
        cached, dirty = self.table[token_ids].clone(), self.dirty
        self._compute_rows(token_ids)
        self.unverified[token_ids] = False
        if torch.equal(cached, self.table[token_ids]):
            self.dirty = dirty
            return
        self.table[self.unverified] = -1
        self.unverified[:] = False
        self.cache_rejected = True

    def _compute_rows(self, token_ids: torch.Tensor) -> None:
        ids = token_ids.numpy()
        _, found = self.query(self._matrix[ids], self.k + 1)  # (n, K+1)
        rows = np.empty((len(ids), self.k), dtype=np.int64)
        for r, (tid, cand) in enumerate(zip(ids, found)):
            cand = cand[cand != tid]  # self excluded (duplicates of self stay candidates)
            if len(cand) < self.k:  # tiny vocabularies: repeat the last neighbour
                cand = np.concatenate([cand, np.repeat(cand[-1:] if len(cand) else [tid], self.k - len(cand))])
            rows[r] = cand[: self.k]
        self.table[torch.from_numpy(ids)] = torch.from_numpy(rows)
        self.dirty = True

    def build_table(self, batch: int = 4096) -> torch.Tensor:
        """Fill and return the full <long>[V,K] table (every vocabulary entry)."""
        if self.unverified is not None:  # a full table is computed here anyway: nothing read is kept
            self.table[self.unverified] = -1
            self.unverified = None
        todo = torch.nonzero(self.table[:, 0] < 0).flatten()
        for s in range(0, len(todo), batch):
            self._compute_rows(todo[s: s + batch])
        return self.table

    # -- disk cache -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the (possibly partial) table and its fingerprint as safetensors, atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"k": str(self.k), "metric": self.metric, "fingerprint": self.fingerprint or "",
                "exclude": json.dumps(sorted(self.exclude), sort_keys=True)}
        replace_atomically(path, lambda tmp: save_file({"table": self.table.contiguous()}, str(tmp), metadata=meta))
        self.dirty = False
        return path

    def load_table(self, path: str | os.PathLike) -> bool:
        """Adopt a saved table if it was computed from this matrix with these settings."""
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                ok = (meta.get("fingerprint") == self.fingerprint and meta.get("k") == str(self.k)
                      and meta.get("metric") == self.metric
                      and meta.get("exclude") == json.dumps(sorted(self.exclude), sort_keys=True))
                if not ok:
                    return False
                table = f.get_tensor("table")
        except Exception:  # unreadable/truncated cache: recompute
            return False
        if not valid_table(table, self.table.shape, self.exclude):
            return False
        self.table, self.dirty = table.long().clone(), False
        self.unverified = self.table[:, 0] >= 0  # checked row by row on first use (_verify_rows)
        return True


def valid_table(table, shape: tuple, exclude) -> bool:
    """A neighbour table read from disk has the expected shape and integer type, and each row is
    either not computed (all −1) or K ids of real vocabulary entries (in range, none excluded)."""
    if not isinstance(table, torch.Tensor) or table.dtype not in (torch.int64, torch.int32, torch.int16):
        return False
    if tuple(table.shape) != tuple(shape):
        return False
    t = table.long()
    empty = (t == -1).all(dim=1)
    ids_ok = ((t >= 0) & (t < shape[0])).all(dim=1)
    if not bool((empty | ids_ok).all()):
        return False
    if exclude and bool(torch.isin(t[ids_ok], torch.tensor(sorted(exclude), dtype=torch.long)).any()):
        return False
    return True


# --------------------------------------------------------------------------------------------
# discretization


def neighbor_directions(matrix: torch.Tensor, token_ids: torch.Tensor, neighbor_ids: torch.Tensor) -> torch.Tensor:
    """<float>[N,K,D] unit directions uᵢₖ = (v_nₖ − vᵢ)/‖v_nₖ − vᵢ‖ (zero for a duplicate vector)."""
    v = matrix[token_ids]  # (N, D)
    d = matrix[neighbor_ids] - v.unsqueeze(1)  # (N, K, D)
    return d / d.norm(dim=-1, keepdim=True).clamp(min=EPS)


@dataclass
class Discretized:
    moved_to: torch.Tensor  # <long>[N] neighbour whose direction best matches δ
    cosine: torch.Tensor  # <float>[N] cos(δ, u_moved_to)
    rank: torch.Tensor  # <long>[N] 1-based rank of moved_to among the K neighbours (1 = nearest)
    nearest: torch.Tensor  # <long>[N] vocabulary entry nearest (L2) to v + δ


PRUNE_K = 32  # L2 candidates per token for the exact pruned nearest-word search


def _l2_candidates(l2_index: NeighborIndex, token_ids: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids <long>[N,k], distances <float>[N,k] ascending): the k indexed entries nearest to each
    token's own embedding (itself included when indexed). Cached per token on the index, since
    these depend only on the matrix."""
    cache = l2_index.__dict__.setdefault("_cand", {})
    if cache.get("k") != k or cache.get("fingerprint") != l2_index.fingerprint:
        V = l2_index.vocab_size
        cache.update(k=k, fingerprint=l2_index.fingerprint, ids=torch.full((V, k), -1, dtype=torch.long),
                     dist=torch.zeros((V, k)))
    todo = torch.unique(token_ids[cache["ids"][token_ids, 0] < 0])
    if len(todo):
        sq, found = l2_index.query(l2_index._matrix[todo.numpy()], k)  # (n, k) squared L2, ascending
        cache["ids"][todo] = torch.from_numpy(found)
        cache["dist"][todo] = torch.from_numpy(np.sqrt(np.maximum(sq, 0.0)))
    return cache["ids"][token_ids], cache["dist"][token_ids]


def nearest_entries(matrix: torch.Tensor, l2_index: NeighborIndex, token_ids: torch.Tensor,
                    delta: torch.Tensor, k: int = PRUNE_K) -> torch.Tensor:
    """<long>[N] exact nearest entry (L2) to each v_t + δ, an indexed entry or t's own row,
    searching the whole vocabulary only where the triangle inequality cannot rule it out.

    C = the k entries nearest to v_t, r_k the distance to the last of them. Any w outside C has
    ‖v_t − w‖ ≥ r_k, so ‖v_t + δ − w‖ ≥ r_k − ‖δ‖: when the best candidate is at most that far,
    it is the global nearest. Small perturbations (the common case) never touch the full index."""
    cand, r = _l2_candidates(l2_index, token_ids, min(k, len(l2_index.ids)))  # (N,k), (N,k)
    p = matrix[token_ids] + delta  # (N, D)
    d = (matrix[cand] - p.unsqueeze(1)).norm(dim=-1)  # (N, k)
    d_best, best = d.min(dim=1)  # (N,)
    near = cand.gather(1, best[:, None]).squeeze(1)
    unsure = d_best > r[:, -1] - delta.norm(dim=-1)
    if bool(unsure.any()):
        _, found = l2_index.query(p[unsure], 1)  # (n, 1)
        near[unsure] = torch.from_numpy(found[:, 0])
    # the token's own row is an entry too, even where it is not indexed (<unk>): a perturbed <unk>
    # whose δ is shorter than the way to any word has not moved to a word
    own = delta.norm(dim=-1) <= (matrix[near] - p).norm(dim=-1)  # (N,)
    return torch.where(own, token_ids, near)


def moved_to(matrix: torch.Tensor, neighbors: NeighborIndex, token_ids: torch.Tensor,
             delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(moved_to <long>[N], cosine <float>[N], 1-based rank <long>[N]): for N perturbed tokens
    (token_ids <long>[N], delta <float>[N,D]), the neighbour of each token (of its K cosine
    neighbours) whose unit direction from the token has the highest cosine with δ (SPGD Fig. 2)."""
    matrix = matrix.detach().float().cpu()  # (V, D)
    token_ids = token_ids.cpu().long()
    delta = delta.detach().float().cpu()  # (N, D)
    nb = neighbors.neighbors_of(token_ids)  # (N, K)
    u = neighbor_directions(matrix, token_ids, nb)  # (N, K, D)
    unit = delta / delta.norm(dim=-1, keepdim=True).clamp(min=EPS)  # (N, D)
    cos = torch.einsum("nkd,nd->nk", u, unit)  # (N, K)
    best = cos.argmax(dim=1)  # (N,)
    return nb.gather(1, best[:, None]).squeeze(1), cos.gather(1, best[:, None]).squeeze(1), best + 1


def discretize(matrix: torch.Tensor, neighbors: NeighborIndex, l2_index: NeighborIndex,
               token_ids: torch.Tensor, delta: torch.Tensor) -> Discretized:
    """Batch discretization of N perturbed tokens: token_ids <long>[N], delta <float>[N,D]."""
    moved, cos, rank = moved_to(matrix, neighbors, token_ids, delta)
    near = nearest_entries(matrix.detach().float().cpu(), l2_index, token_ids.cpu().long(),
                           delta.detach().float().cpu())  # (N,)
    return Discretized(moved, cos, rank, near)


def excluded_ids(tokenizer) -> tuple[int, ...]:
    """Vocabulary rows that are never neighbours: special tokens, <unk>, and BERT's unused
    ``[unusedN]`` slots (untrained rows that would otherwise show up as meaningless moves)."""
    ids = set(int(i) for i in tokenizer.special_ids)
    if getattr(tokenizer, "unk_id", None) is not None:
        ids.add(int(tokenizer.unk_id))
    ids.update(i for i, w in enumerate(tokenizer.vocab) if w.startswith("[unused") and w.endswith("]"))
    return tuple(sorted(ids))


# --------------------------------------------------------------------------------------------
# per-model cache (the app and `inspect` reuse one index per checkpoint)

_CACHE: dict[tuple, NeighborIndex] = {}


def index_for(model, k: int = 15, metric: str = "cosine", cache_dir: str | os.PathLike | None = None,
              matrix: torch.Tensor | None = None) -> NeighborIndex:
    """A fitted index for a Classifier's current embedding matrix, memoised in memory (by the
    matrix fingerprint) and, with ``cache_dir``, on disk as ``neighbors-<metric>-k<K>.safetensors``."""
    m = (matrix if matrix is not None else model.embedding_matrix()).detach()
    exclude = excluded_ids(model.tokenizer)
    # tensor identity + in-place version counter: an optimiser step makes the entry stale
    key = (m.data_ptr(), tuple(m.shape), m._version, k, metric, exclude)
    if key in _CACHE:
        return _CACHE[key]
    idx = NeighborIndex(k, metric, exclude).fit(m)
    if cache_dir is not None:
        idx.cache_path = Path(cache_dir) / f"neighbors-{metric}-k{k}.safetensors"
        if idx.cache_path.is_file():
            idx.load_table(idx.cache_path)
    if len(_CACHE) > 16:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = idx
    return idx


def persist(index: NeighborIndex) -> None:
    """Write a cached index's table back to its cache file when rows were added (best effort)."""
    path = getattr(index, "cache_path", None)
    if path is not None and (index.dirty or index.cache_rejected):
        try:
            index.save(path)
        except OSError:
            pass  # a read-only checkpoint directory: the in-memory cache still serves
