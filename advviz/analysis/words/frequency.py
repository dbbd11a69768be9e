"""Training-set frequencies of the model's vocabulary (the checkpoint's own training split)."""

from __future__ import annotations


import numpy as np
import torch

from ...data import load_splits, training_reading
from ...errors import AdvvizError
from .records import FREQ_CHUNK


# --------------------------------------------------------------------------------------------
# training-set frequencies


def training_frequency(model, data_dir=None) -> tuple[np.ndarray | None, str]:
    """(<int64>[V] count of every vocabulary id in the checkpoint's training split as the model
    reads it — same subset, truncation and tokenizer; special tokens not counted —, a sentence
    saying where it came from). (None, why) when the training data cannot be read."""
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
