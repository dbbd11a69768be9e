"""The word atlas: which words an embedding-space adversary moves across a whole data set, toward
which words, and how that compares with saliency, training frequency and another model.

    import advviz
    from advviz.analysis.words import word_atlas
    m = advviz.load("models/lstm-sst2-sent-baseline-s0")
    ds = m.examples("sst2-sent", "dev")
    atlas = word_atlas(m, ds.texts, ds.labels, "spgd", dataset="sst2-sent", split="dev")
    atlas["words"][:3], atlas["correlations"]

Two layers, so that changing ``min_count`` or the sort order never re-runs the attack:

1. :func:`attack_tokens` runs the attack over the texts in length-sorted batches of
   ``batch_size`` (one attack pass per batch, as ``advviz eval --attack``) and keeps one record
   per perturbable token occurrence (:class:`TokenRecords`): the token id, its position, ``norm``
   = ‖δᵢ‖₂, ``moved_to``, ``nearest``, ``cosine`` and neighbour ``rank`` (the conventions of
   ``advviz inspect``, :mod:`advviz.analysis.inspection`; ``moved_to`` is −1 where the norm is 0),
   ``saliency`` = ‖∂L/∂eᵢ‖₂ of the example's own cross-entropy at δ = 0, and ``top3`` (the
   occurrence is among its sentence's three largest non-zero ‖δᵢ‖, ties broken by position); and
   per sentence the label attacked, the clean and the adversarial prediction. Like ``advviz eval
   --attack`` the attack targets each example's *gold* label (eval mode, seeded generator), so the
   share of flipped predictions is eval's flip rate over the same sentences. The training-set
   count of every vocabulary entry (the checkpoint's own training split, truncated as the model
   reads it) is computed once and stored beside the records. All of it is cached on disk
   (:func:`cache_dir_for`: ``DIR/cache/words-KEY.safetensors``), keyed by the SHA-256 of the
   checkpoint's weights and config, the resolved attack settings (after the family preset), the
   seed, the batch size and the texts and labels; the key and the checkpoint hash are checked
   again on read, so a cache of weights that have changed since is recomputed, never shown.
2. :func:`aggregate` turns the records into one row per word (vocabulary token) with ``count``
   (occurrences), ``mean_norm``, ``top_share``, ``moved_to`` ([[word, count], …], most frequent
   first, at most ``top_targets``), ``saliency`` (mean), ``frequency`` (training-set count) and
   ``flip_share`` (the share of the distinct sentences containing the word whose prediction
   flips), keeping words with ``count >= min_count``, sorted by ``mean_norm × count`` (or
   ``sort``); and the Spearman correlations over those words of ``mean_norm`` with ``saliency``
   and with ``frequency``. Everything is ``numpy.bincount``/``unique`` over the records: no loop
   over sentences or over the vocabulary.

:func:`compare` adds B's ``mean_norm``/``top_share`` and the differences B − A per word (matched
by the word's string, so two tokenizers can be compared on the words they share).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from contextlib import closing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import AdvvizError
from ..storage.jsonio import dumps

CACHE_VERSION = 1
TOP_K = 3  # "among its sentence's top-3 perturbed tokens"
TOP_TARGETS = 5  # moved_to targets kept per word
FREQ_CHUNK = 1024  # training texts tokenized per batch when counting frequencies
SORT_KEYS = ("score", "count", "mean_norm", "top_share", "saliency", "frequency", "flip_share", "word",
             "delta_mean_norm", "delta_top_share")
WORD_KEYS = ("word", "count", "mean_norm", "top_share", "moved_to", "saliency", "frequency", "flip_share")
Progress = Callable[[float, str], None]


# --------------------------------------------------------------------------------------------
# per-occurrence records


@dataclass
class TokenRecords:
    """One entry per perturbable token occurrence (N) and per sentence (S); see the module doc."""

    sent: np.ndarray  # <int64>[N] sentence index (order of the texts given)
    pos: np.ndarray  # <int64>[N] position in the tokenized sentence
    token: np.ndarray  # <int64>[N] vocabulary id
    norm: np.ndarray  # <float32>[N] ‖δᵢ‖₂
    moved_to: np.ndarray  # <int64>[N] vocabulary id, −1 where norm == 0
    nearest: np.ndarray  # <int64>[N] vocabulary entry nearest (L2) to vᵢ + δᵢ
    cosine: np.ndarray  # <float32>[N] cos(δᵢ, direction to moved_to), NaN where norm == 0
    rank: np.ndarray  # <int64>[N] 1-based neighbour rank of moved_to, 0 where norm == 0
    saliency: np.ndarray  # <float32>[N] ‖∂L/∂eᵢ‖₂ at δ = 0
    top3: np.ndarray  # <bool>[N] among its sentence's 3 largest non-zero norms
    label: np.ndarray  # <int64>[S] label attacked (gold)
    pred: np.ndarray  # <int64>[S] clean prediction
    adv_pred: np.ndarray  # <int64>[S] prediction under attack
    frequency: np.ndarray | None = None  # <int64>[V] training-set count per vocabulary id

    PER_TOKEN = ("sent", "pos", "token", "norm", "moved_to", "nearest", "cosine", "rank", "saliency", "top3")
    PER_SENTENCE = ("label", "pred", "adv_pred")

    @property
    def n_sentences(self) -> int:
        return len(self.label)

    def check(self, vocab_size: int) -> None:
        """Shapes, types and ranges consistent (a cache file is validated with this before use)."""
        n, s = len(self.token), len(self.label)
        for name in self.PER_TOKEN:
            a = getattr(self, name)
            if not isinstance(a, np.ndarray) or a.shape != (n,):
                raise ValueError(f"{name}: expected shape ({n},)")
        for name in self.PER_SENTENCE:
            if getattr(self, name).shape != (s,):
                raise ValueError(f"{name}: expected shape ({s},)")
        if n and (self.sent.min() < 0 or self.sent.max() >= s):
            raise ValueError("sentence index out of range")
        for name in ("token", "nearest"):
            a = getattr(self, name)
            if n and (a.min() < 0 or a.max() >= vocab_size):
                raise ValueError(f"{name}: id out of range")
        if n and (self.moved_to.min() < -1 or self.moved_to.max() >= vocab_size):
            raise ValueError("moved_to: id out of range")
        if not (np.all(np.isfinite(self.norm)) and np.all(self.norm >= 0) and np.all(np.isfinite(self.saliency))):
            raise ValueError("norm/saliency not finite and >= 0")
        if not np.array_equal(self.moved_to < 0, self.norm == 0):
            raise ValueError("moved_to is -1 exactly where the norm is 0")
        if self.frequency is not None and (self.frequency.shape != (vocab_size,) or self.frequency.min(initial=0) < 0):
            raise ValueError("frequency: expected one non-negative count per vocabulary id")

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for f in fields(self):
            a = getattr(self, f.name)
            if a is not None:
                out[f.name] = torch.from_numpy(np.ascontiguousarray(a.astype(np.uint8) if a.dtype == bool else a))
        return out

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> "TokenRecords":
        kinds = {"norm": np.float32, "cosine": np.float32, "saliency": np.float32, "top3": bool}
        vals = {}
        for f in fields(cls):
            if f.name not in t:
                if f.name == "frequency":
                    vals[f.name] = None
                    continue
                raise ValueError(f"missing {f.name}")
            vals[f.name] = t[f.name].numpy().astype(kinds.get(f.name, np.int64))
        return cls(**vals)


def _top_flags(norms: torch.Tensor, mask: torch.Tensor, k: int = TOP_K) -> torch.Tensor:
    """<bool>[B,T]: the k largest non-zero norms of each row among the masked positions (stable:
    ties go to the earlier position)."""
    scores = norms.masked_fill(~mask, float("-inf"))  # (B, T)
    ranks = scores.argsort(dim=1, descending=True, stable=True).argsort(dim=1)  # (B, T) 0 = largest
    return (ranks < k) & mask & (norms > 0)


def _clean_pass(core, ids, att, y) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean logits <float>[B,C], saliency <float>[B,T]) from one forward and one backward: the
    per-example ‖∂L_j/∂e_jt‖ (summed loss, so each example's gradient is its own)."""
    import torch.nn.functional as F

    with torch.enable_grad():
        e = core.embed(ids).detach().requires_grad_()  # (B, T, D)
        out = core(inputs_embeds=e, attention_mask=att)
        loss = F.cross_entropy(out.logits.float(), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, e)
    return out.logits.detach().float(), g.float().norm(dim=-1)  # (B, C), (B, T)


def _params(method, seed: int, batch_size: int) -> dict:
    """What an entry of the cache depends on besides the checkpoint and the texts."""
    return {"attack": method.describe(), "seed": int(seed), "batch_size": int(batch_size), "label": "gold"}


def atlas_key(model, texts, labels, attack: str, overrides: dict | None = None, seed: int = 0,
              batch_size: int = 32) -> str | None:
    """The cache key :func:`attack_tokens` uses for these settings (None: a model without a directory)."""
    from .attacks import build_attack

    directory = getattr(model, "directory", None)
    if not directory:
        return None
    method = build_attack(attack, overrides, getattr(model, "classifier", model))
    return cache_key(directory, list(texts), [int(y) for y in labels], _params(method, seed, batch_size))


def cached_records(model, texts, labels, attack: str, overrides: dict | None = None, seed: int = 0,
                   batch_size: int = 32, cache_dir="auto") -> tuple[TokenRecords, dict] | None:
    """The valid cache entry for these settings, or None (nothing is computed): lets a caller
    show a progress bar only when the attack really has to run."""
    cache_dir = cache_dir_for(model) if cache_dir == "auto" else cache_dir
    key = atlas_key(model, texts, labels, attack, overrides, seed, batch_size)
    if key is None or cache_dir is None:
        return None
    hit = read_cache(Path(cache_dir), key, model.directory, len(model_vocab(model)))
    return None if hit is None else (hit[0], {**hit[1], "cached": True})


def _tap_grad0(method) -> dict:
    """Record the first input gradient g0 = ∂L/∂E at δ = 0 that a single-perturbation adversary
    computes anyway and hands to its ``adversary(model, ids, embeds, att, y, mask, g0, generator)``
    (``methods/adversarial.py``), so the saliency costs no second backward pass. Attacks that do
    not (FreeLB, PGD with a random start) leave the box empty and :func:`_clean_pass` runs."""
    box: dict = {}
    inner = getattr(method, "adversary", None)
    if inner is None or not callable(inner):
        return box

    def adversary(model, ids, embeds, att, y, mask, g0, generator):
        if g0 is not None:
            box["g0"] = g0.detach()
        return inner(model, ids, embeds, att, y, mask, g0, generator)

    method.adversary = adversary  # this attack object only (built for this call)
    return box


def attack_tokens(model, texts: list[str], labels: list[int], attack: str, overrides: dict | None = None,
                  seed: int = 0, batch_size: int = 32, cache_dir: str | os.PathLike | None = None,
                  data_dir=None, progress: Progress | None = None) -> tuple[TokenRecords, dict]:
    """(records, meta): the attack over ``texts`` (gold ``labels``), from the disk cache when a
    valid entry exists. ``meta`` holds the resolved attack, the cache key, ``cached`` and where
    the frequencies came from."""
    from ..methods import neighbors
    from .attacks import attack_batches, check_examples, discretize, prepare_attack

    core = getattr(model, "classifier", model)
    texts, labels = check_examples(core, texts, labels)
    if batch_size < 1:
        raise AdvvizError(f"batch size must be positive, got {batch_size}")
    directory = getattr(model, "directory", None)
    method, cos_index = prepare_attack(model, attack, overrides,
                                       Path(directory) / "cache" if directory and cache_dir else None)
    described = method.describe()
    key = cache_key(directory, texts, labels, _params(method, seed, batch_size)) \
        if (cache_dir is not None and directory) else None
    if key:
        hit = read_cache(Path(cache_dir), key, directory, len(core.tokenizer.vocab))
        if hit is not None:
            if progress:
                progress(1.0, "loaded from cache")
            return hit[0], {**hit[1], "cached": True}

    parts: dict[str, list] = {k: [] for k in TokenRecords.PER_TOKEN}
    S = len(texts)
    label_arr = np.asarray(labels, dtype=np.int64)
    pred, adv_pred = np.zeros(S, np.int64), np.zeros(S, np.int64)
    l2_index = neighbors.index_for(core, 1, "l2")
    tap = _tap_grad0(method)

    def report(done, total):
        if progress:
            progress(0.95 * done / total, f"{described['name']}: {done}/{total} sentences")

    with closing(attack_batches(core, method, texts, labels, batch_size=batch_size, seed=seed,
                                progress=report)) as batches:
        for ab in batches:
            idx, ids, att, y, delta = ab.index, ab.ids, ab.att, ab.labels, ab.delta  # (B, T) (B, T) (B,) (B, T, D)
            g0 = tap.pop("g0", None)
            if g0 is not None and g0.shape == delta.shape:
                # the attack's own ∂L/∂E at δ = 0 (mean loss over the batch): no second backward
                sal = g0.float().norm(dim=-1) * ids.shape[0]  # (B, T)
                logits = ab.clean.logits.float()  # (B, C)
            else:
                logits, sal = _clean_pass(core, ids, att, y)  # (B, C), (B, T)
            adv = ab.adv.logits.float()  # (B, C)
            mask = ab.real  # (B, T)
            norms = delta.float().norm(dim=-1) * mask  # (B, T)
            top = _top_flags(norms, mask)  # (B, T)
            bi, ti = mask.nonzero(as_tuple=True)  # (N_b,) each, row-major: sentence then position
            tok = ids[bi, ti]
            n = norms[bi, ti]
            moved = n > 0
            nb = len(tok)
            moved_to = torch.full((nb,), -1, dtype=torch.long)
            nearest = tok.cpu().clone()
            cosine = torch.full((nb,), float("nan"))
            rank = torch.zeros(nb, dtype=torch.long)
            if bool(moved.any()):
                d = discretize(ab, cos_index, l2_index, bi[moved], ti[moved])
                mv = moved.cpu()
                moved_to[mv], nearest[mv], cosine[mv], rank[mv] = d.moved_to, d.nearest, d.cosine.float(), d.rank
            rows = torch.as_tensor(idx, dtype=torch.long)[bi.cpu()]
            for name, v in (("sent", rows), ("pos", ti), ("token", tok), ("norm", n), ("moved_to", moved_to),
                            ("nearest", nearest), ("cosine", cosine), ("rank", rank), ("saliency", sal[bi, ti]),
                            ("top3", top[bi, ti])):
                parts[name].append(v.detach().cpu().numpy())
            pred[idx] = logits.argmax(-1).cpu().numpy()
            adv_pred[idx] = adv.argmax(-1).cpu().numpy()
    neighbors.persist(cos_index)
    kinds = {"norm": np.float32, "cosine": np.float32, "saliency": np.float32, "top3": bool}
    arrays = {k: np.concatenate(v).astype(kinds.get(k, np.int64)) for k, v in parts.items()}
    if progress:
        progress(0.96, "counting the training set's words")
    frequency, freq_source = training_frequency(model, data_dir)
    rec = TokenRecords(**arrays, label=label_arr, pred=pred, adv_pred=adv_pred, frequency=frequency)
    meta = {"version": CACHE_VERSION, "key": key, "attack": described, "seed": int(seed),
            "batch_size": int(batch_size), "n_examples": S, "frequency_source": freq_source,
            "checkpoint_hash": _hash(directory) if key else None}
    if key:
        write_cache(Path(cache_dir), key, rec, meta)
    if progress:
        progress(1.0, "done")
    return rec, {**meta, "cached": False}


# --------------------------------------------------------------------------------------------
# training-set frequencies


def training_frequency(model, data_dir=None) -> tuple[np.ndarray | None, str]:
    """(<int64>[V] count of every vocabulary id in the checkpoint's training split as the model
    reads it — same subset, truncation and tokenizer; special tokens not counted —, a sentence
    saying where it came from). (None, why) when the training data cannot be read."""
    from ..data import load_splits, training_reading

    core = getattr(model, "classifier", model)
    cfg = getattr(model, "config", None) or {}
    train = cfg.get("train") or {}
    name = train.get("dataset") or (cfg.get("data") or {}).get("name")
    if not name:
        return None, "unknown training data set (frequency not available)"
    try:
        splits = load_splits(name, data_dir if data_dir is not None else train.get("data_dir"),
                             **training_reading(cfg, name))
        ds = splits["train"].subset(train.get("max_train"), int(train.get("seed") or 0))
    except (AdvvizError, KeyError, OSError, ValueError) as e:
        return None, f"training data {name} not readable ({e}); frequency not available"
    tok = core.tokenizer
    V = len(tok.vocab)
    counts = np.zeros(V, dtype=np.int64)
    special = torch.tensor(sorted(int(i) for i in tok.special_ids), dtype=torch.long)
    for s in range(0, len(ds.texts), FREQ_CHUNK):
        b = tok.batch(ds.texts[s: s + FREQ_CHUNK])
        ids = b["input_ids"][b["attention_mask"].bool()]  # (n,)
        ids = ids[~torch.isin(ids, special)]
        counts += np.bincount(ids.numpy(), minlength=V)[:V]
    sub = f", {len(ds):,}-example subset" if train.get("max_train") else ""
    return counts, f"{name}/train ({len(ds):,} texts{sub})"


# --------------------------------------------------------------------------------------------
# aggregation


def _spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    from scipy.stats import spearmanr

    rho = float(spearmanr(x, y).statistic)
    return rho if math.isfinite(rho) else None


def _sort_value(row: dict, sort: str):
    if sort == "score":
        return row["mean_norm"] * row["count"]
    return row.get(sort)


def aggregate(rec: TokenRecords, vocab: list[str], min_count: int = 1, sort: str = "score",
              top_targets: int = TOP_TARGETS, ascending: bool = False) -> dict:
    """{"words": [row, ...], "correlations": {...}, "n_words"}: one row per vocabulary token
    seen at least ``min_count`` times (see the module docstring for the keys)."""
    if min_count < 1:
        raise AdvvizError(f"--min-count must be at least 1, got {min_count}")
    if sort not in SORT_KEYS:
        raise AdvvizError(f"--sort must be one of {', '.join(SORT_KEYS)}, got {sort!r}")
    V, S = len(vocab), max(rec.n_sentences, 1)
    tok = rec.token
    count = np.bincount(tok, minlength=V)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_norm = np.bincount(tok, weights=rec.norm.astype(np.float64), minlength=V) / count
        top_share = np.bincount(tok, weights=rec.top3.astype(np.float64), minlength=V) / count
        saliency = np.bincount(tok, weights=rec.saliency.astype(np.float64), minlength=V) / count
        # distinct (word, sentence) pairs for the share of a word's sentences that flip
        pairs = np.unique(tok * S + rec.sent)
        p_tok, p_sent = pairs // S, pairs % S
        flipped = (rec.pred != rec.adv_pred).astype(np.float64)
        flip_share = np.bincount(p_tok, weights=flipped[p_sent], minlength=V) / np.bincount(p_tok, minlength=V)
    targets = _top_targets(rec, V, top_targets)
    keep = np.flatnonzero(count >= min_count)
    freq = rec.frequency
    rows = [{"word": vocab[i], "count": int(count[i]), "mean_norm": float(mean_norm[i]),
             "top_share": float(top_share[i]), "moved_to": [[vocab[t], c] for t, c in targets.get(int(i), [])],
             "saliency": float(saliency[i]), "frequency": int(freq[i]) if freq is not None else None,
             "flip_share": float(flip_share[i])} for i in keep]
    sort_rows(rows, sort, ascending)
    corr = {"method": "spearman", "over": "words", "n_words": len(rows),
            "mean_norm_saliency": _spearman(mean_norm[keep], saliency[keep]),
            "mean_norm_frequency": _spearman(mean_norm[keep], freq[keep].astype(np.float64))
            if freq is not None else None}
    return {"words": rows, "correlations": corr, "n_words": len(rows)}


def sort_rows(rows: list[dict], sort: str = "score", ascending: bool = False) -> list[dict]:
    """In place: by ``sort`` (descending unless ``ascending``; ``word`` alphabetically), ties by
    word; rows without a value (a delta where B lacks the word) always last."""
    if sort == "word":
        rows.sort(key=lambda r: r["word"], reverse=ascending)
        return rows
    rows.sort(key=lambda r: r["word"])
    rows.sort(key=lambda r: _sort_value(r, sort) if _sort_value(r, sort) is not None else 0.0, reverse=not ascending)
    rows.sort(key=lambda r: _sort_value(r, sort) is None)
    return rows


def _top_targets(rec: TokenRecords, V: int, top: int) -> dict[int, list[tuple[int, int]]]:
    """word id -> [(target id, count), ...] of its most frequent ``moved_to`` targets (count desc,
    then id): one ``np.unique`` over the (word, target) pairs of the moved occurrences."""
    moved = rec.moved_to >= 0
    if not moved.any() or top < 1:
        return {}
    uniq, cnt = np.unique(rec.token[moved] * V + rec.moved_to[moved], return_counts=True)
    src, tgt = uniq // V, uniq % V
    order = np.lexsort((tgt, -cnt, src))  # by source, then count descending, then target id
    src, tgt, cnt = src[order], tgt[order], cnt[order]
    first = np.searchsorted(src, src, side="left")
    keep = (np.arange(len(src)) - first) < top
    out: dict[int, list[tuple[int, int]]] = {}
    for s, t, c in zip(src[keep].tolist(), tgt[keep].tolist(), cnt[keep].tolist()):
        out.setdefault(s, []).append((t, c))
    return out


def pairs(rec: TokenRecords, vocab: list[str], top: int = 25) -> list[dict]:
    """The ``top`` most frequent word → moved_to pairs over the data set: {word, moved_to, count}."""
    moved = rec.moved_to >= 0
    if not moved.any():
        return []
    V = len(vocab)
    uniq, cnt = np.unique(rec.token[moved] * V + rec.moved_to[moved], return_counts=True)
    order = np.lexsort((uniq, -cnt))[:top]
    return [{"word": vocab[int(uniq[i] // V)], "moved_to": vocab[int(uniq[i] % V)], "count": int(cnt[i])}
            for i in order]


def compare(rows_a: list[dict], rows_b: list[dict]) -> list[dict]:
    """A's rows with ``count_b``, ``mean_norm_b``, ``top_share_b`` and ``delta_mean_norm``,
    ``delta_top_share`` (B − A; null where B does not have the word), matched by word."""
    by_word = {r["word"]: r for r in rows_b}
    out = []
    for r in rows_a:
        b = by_word.get(r["word"])
        extra = {"count_b": None, "mean_norm_b": None, "top_share_b": None, "delta_mean_norm": None,
                 "delta_top_share": None}
        if b is not None:
            extra = {"count_b": b["count"], "mean_norm_b": b["mean_norm"], "top_share_b": b["top_share"],
                     "delta_mean_norm": b["mean_norm"] - r["mean_norm"], "delta_top_share": b["top_share"] - r["top_share"]}
        out.append({**r, **extra})
    return out


def compare_atlases(a: dict, b: dict, sort: str = "score", ascending: bool = False) -> dict:
    """A's atlas with B's values and the differences B − A on each word (:func:`compare`), and B's
    summary under ``compare``."""
    if sort not in SORT_KEYS:
        raise AdvvizError(f"--sort must be one of {', '.join(SORT_KEYS)}, got {sort!r}")
    words = sort_rows(compare(a["words"], b["words"]), sort, ascending)
    summary = {k: b.get(k) for k in ("model", "attack", "n_examples", "correlations", "n_words", "flip_rate",
                                     "frequency_source", "cached")}
    return {**a, "sort": sort, "ascending": ascending, "words": words, "compare": summary}


def sentences_of(rec: TokenRecords, vocab: list[str], word: str) -> list[int]:
    """Indices of the sentences in which ``word`` occurs (ascending)."""
    try:
        wid = vocab.index(word)
    except ValueError:
        return []
    return np.unique(rec.sent[rec.token == wid]).tolist()


def sentence_tokens(rec: TokenRecords, vocab: list[str], i: int) -> list[dict]:
    """Sentence ``i``'s tokens as ``inspect`` reports them (index, token, norm, moved_to, nearest,
    cosine, neighbor_rank), for the heatmap of "Which words move"."""
    sel = np.flatnonzero(rec.sent == i)
    sel = sel[np.argsort(rec.pos[sel], kind="stable")]
    out = []
    for j in sel:
        moved = rec.moved_to[j] >= 0
        out.append({"index": int(rec.pos[j]), "token": vocab[rec.token[j]], "norm": float(rec.norm[j]),
                    "moved_to": vocab[rec.moved_to[j]] if moved else None, "nearest": vocab[rec.nearest[j]],
                    "cosine": float(rec.cosine[j]) if moved else None,
                    "neighbor_rank": int(rec.rank[j]) if moved else None, "saliency": float(rec.saliency[j])})
    return out


# --------------------------------------------------------------------------------------------
# the one call the CLI and the app use


def word_atlas(model, texts, labels, attack: str, overrides: dict | None = None, *, dataset: str | None = None,
               split: str | None = None, seed: int = 0, min_count: int = 1, sort: str = "score",
               ascending: bool = False, batch_size: int = 32, cache_dir: str | os.PathLike | None = "auto",
               data_dir=None, progress: Progress | None = None) -> dict:
    """The atlas JSON: ``model, dataset, split, attack, n_examples, words, correlations`` (+
    ``min_count, sort, n_words, frequency_source, cached``). ``cache_dir="auto"``: beside the
    checkpoint (:func:`cache_dir_for`); None: no disk cache."""
    if min_count < 1:
        raise AdvvizError(f"--min-count must be at least 1, got {min_count}")
    if sort not in SORT_KEYS:
        raise AdvvizError(f"--sort must be one of {', '.join(SORT_KEYS)}, got {sort!r}")
    if cache_dir == "auto":
        cache_dir = cache_dir_for(model)
    if sort.startswith("delta_"):
        raise AdvvizError(f"--sort {sort} compares two checkpoints: give DIR_A DIR_B")
    rec, meta = attack_tokens(model, texts, labels, attack, overrides, seed, batch_size, cache_dir, data_dir, progress)
    return atlas_from_records(model, rec, meta, dataset, split, min_count, sort, ascending)


def atlas_from_records(model, rec: TokenRecords, meta: dict, dataset: str | None = None, split: str | None = None,
                       min_count: int = 1, sort: str = "score", ascending: bool = False) -> dict:
    """The atlas JSON of :func:`word_atlas` from records already computed (or read from the cache)."""
    agg = aggregate(rec, model_vocab(model), min_count, sort, ascending=ascending)
    return {"model": getattr(model, "name", None) or str(getattr(model, "directory", "")), "dataset": dataset,
            "split": split, "attack": meta["attack"], "n_examples": rec.n_sentences, "words": agg["words"],
            "correlations": agg["correlations"], "min_count": min_count, "sort": sort, "ascending": ascending,
            "n_words": agg["n_words"],
            "flip_rate": float(np.mean(rec.pred != rec.adv_pred)), "frequency_source": meta["frequency_source"],
            "cached": meta["cached"]}


def model_vocab(model) -> list[str]:
    return list(getattr(model, "classifier", model).tokenizer.vocab)


# --------------------------------------------------------------------------------------------
# disk cache


def _hash(directory) -> str:
    from .projection import checkpoint_hash

    return checkpoint_hash(directory)


def cache_key(directory, texts: list[str], labels: list[int], params: dict) -> str:
    """SHA-256 (32 hex digits) of the checkpoint's weights + config, the settings, texts and labels."""
    h = hashlib.sha256()
    h.update(_hash(directory).encode())
    h.update(json.dumps({"v": CACHE_VERSION, **params}, sort_keys=True, default=str).encode())
    for t in texts:
        h.update(t.encode("utf-8") + b"\x00")
    h.update(np.asarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()[:32]


def cache_dir_for(model) -> Path | None:
    """``DIR/cache`` of the checkpoint (shared by ``advviz words`` and the app) when it can be
    written; else ``$ADVVIZ_CACHE_DIR/words`` (or ``~/.cache/advviz/words``); None for a model
    without a directory."""
    directory = getattr(model, "directory", None)
    if not directory:
        return None
    d = Path(directory) / "cache"
    if os.access(d if d.is_dir() else Path(directory), os.W_OK):
        return d
    env = os.environ.get("ADVVIZ_CACHE_DIR")
    return (Path(env) if env else Path.home() / ".cache" / "advviz") / "words"


def cache_path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / f"words-{key}.safetensors"


def read_cache(cache_dir: Path, key: str, directory, vocab_size: int) -> tuple[TokenRecords, dict] | None:
    """The cached records of ``key`` if the file is a valid entry for the checkpoint as it is now
    (same key, same weights hash, consistent arrays); None means "recompute"."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = cache_path(cache_dir, key)
    if not path.is_file() or path.is_symlink():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("meta", "null"))
        if not isinstance(meta, dict) or meta.get("key") != key or meta.get("version") != CACHE_VERSION:
            return None
        if meta.get("checkpoint_hash") != _hash(directory):
            return None  # the checkpoint changed since: stale
        rec = TokenRecords.from_tensors(load_file(str(path)))
        rec.check(vocab_size)
    except (SafetensorError, OSError, ValueError, TypeError, KeyError, RuntimeError):
        return None  # damaged or foreign: recomputed
    return rec, meta


def write_cache(cache_dir: Path, key: str, rec: TokenRecords, meta: dict) -> None:
    """Atomic write (hidden temporary + rename); an unwritable directory only costs the cache."""
    from safetensors.torch import save_file

    from ..storage.outdir import replace_atomically

    cache_dir = Path(cache_dir)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        replace_atomically(cache_path(cache_dir, key), lambda tmp: save_file(
            rec.tensors(), str(tmp), metadata={"meta": dumps(meta)}))  # key order kept
    except OSError:
        pass


# --------------------------------------------------------------------------------------------
# tables and files


def atlas_frame(atlas: dict):
    """The words of an atlas as a pandas DataFrame (``moved_to`` as a JSON list per cell)."""
    import pandas as pd

    rows = [{**r, "moved_to": dumps(r["moved_to"], ensure_ascii=False)} for r in atlas["words"]]
    cols = list(WORD_KEYS) + [k for k in ("count_b", "mean_norm_b", "top_share_b", "delta_mean_norm",
                                          "delta_top_share") if rows and k in rows[0]]
    return pd.DataFrame(rows, columns=cols)


def write_atlas(atlas: dict, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """``.csv``: the word table; ``.json``: the whole atlas (temporary sibling + rename, never over
    a file advviz did not write unless ``overwrite``: :mod:`advviz.storage.outputs`)."""
    from ..storage.outputs import write_output

    path = Path(path)
    if path.suffix.lower() == ".json":
        return write_output(path, lambda tmp: tmp.write_text(dumps(atlas, indent=1) + "\n", encoding="utf-8"),
                            overwrite=overwrite)
    return write_output(path, lambda tmp: atlas_frame(atlas).to_csv(tmp, index=False), overwrite=overwrite)
