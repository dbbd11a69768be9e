"""The attack pass over a data set (:func:`attack_tokens`), its records and saliency, from the disk
cache when a valid entry exists."""

from __future__ import annotations

import os
from contextlib import closing
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import AdvvizError
from ...methods import neighbors
from .cache import _hash, cache_dir_for, cache_key, read_cache, write_cache
from .frequency import training_frequency
from .records import CACHE_VERSION, TOP_K, Progress, TokenRecords, model_vocab


def _top_flags(norms: torch.Tensor, mask: torch.Tensor, k: int = TOP_K) -> torch.Tensor:
    """<bool>[B,T]: the k largest non-zero norms of each row among the masked positions (stable:
    ties go to the earlier position)."""
    scores = norms.masked_fill(~mask, float("-inf"))  # (B, T)
    ranks = scores.argsort(dim=1, descending=True, stable=True).argsort(dim=1)  # (B, T) 0 = largest
    return (ranks < k) & mask & (norms > 0)


def _clean_pass(core, ids, att, y) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean logits <float>[B,C], saliency <float>[B,T]) from one forward and one backward: the
    per-example ‖∂L_j/∂e_jt‖ (summed loss, so each example's gradient is its own)."""
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
    from ..attacks import build_attack  # deferred: `advviz --help` must not load it

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


def attack_tokens(model, texts: list[str], labels: list[int], attack: str, overrides: dict | None = None,
                  seed: int = 0, batch_size: int = 32, cache_dir: str | os.PathLike | None = None,
                  data_dir=None, progress: Progress | None = None) -> tuple[TokenRecords, dict]:
    """(records, meta): the attack over ``texts`` (gold ``labels``), from the disk cache when a
    valid entry exists. ``meta`` holds the resolved attack, the cache key, ``cached`` and where
    the frequencies came from."""
    # deferred: `advviz --help` must not load it
    from ..attacks import attack_batches, check_examples, discretize, prepare_attack

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

    def report(done, total):
        if progress:
            progress(0.95 * done / total, f"{described['name']}: {done}/{total} sentences")

    with closing(attack_batches(core, method, texts, labels, batch_size=batch_size, seed=seed,
                                progress=report)) as batches:
        for ab in batches:
            idx, ids, att, y, delta = ab.index, ab.ids, ab.att, ab.labels, ab.delta  # (B, T) (B, T) (B,) (B, T, D)
            g0 = ab.grad0
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
