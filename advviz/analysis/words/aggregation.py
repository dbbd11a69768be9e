"""Records to one row per word, sorting, pairs, the comparison of two atlases, and the atlas JSON."""

from __future__ import annotations

import math
import os

import numpy as np

from ...errors import AdvvizError
from .attack import attack_tokens
from .cache import cache_dir_for
from .records import SORT_KEYS, TOP_TARGETS, Progress, TokenRecords, model_vocab


# --------------------------------------------------------------------------------------------
# aggregation


def _spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    from scipy.stats import spearmanr  # optional and slow to import: loaded only when used

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
