"""Seeded, stratified dev/test splits carved out of train for sets that lack them."""

from __future__ import annotations


import numpy as np

from .dataset import TextDataset

DERIVED_SPLIT_SEED = 13  # fixed so every run derives the same dev/test split
DERIVED_FRACTION = 0.1  # share of the source split held out for each derived split


def stratified_split(labels: list[int], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out): ``fraction`` of each class held out, seeded."""
    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels)
    held = []
    for c in np.unique(labels_arr):
        idx = np.flatnonzero(labels_arr == c)
        rng.shuffle(idx)
        held.append(idx[: int(round(len(idx) * fraction))])
    held_idx = np.sort(np.concatenate(held)) if held else np.array([], dtype=int)
    keep = np.setdiff1d(np.arange(len(labels_arr)), held_idx)
    return keep, held_idx


def _take(ds: TextDataset, idx, split: str, info: dict) -> TextDataset:
    return TextDataset(ds.name, split, [ds.texts[i] for i in idx], [ds.labels[i] for i in idx],
                       ds.label_names, ds.source, info, ds.skipped_empty if split == "train" else 0,
                       ds.label_mapping)


def derive_splits(full: dict[str, TextDataset], derive=("dev", "test")) -> dict[str, TextDataset]:
    """Fill missing dev/test splits with seeded stratified hold-outs of train (recorded)."""
    out = dict(full)
    train = out["train"]
    missing = [s for s in ("dev", "test") if s not in out and s in derive]
    if not missing:
        return out
    # Hold out one block per missing split; each is DERIVED_FRACTION of the original train.
    frac = DERIVED_FRACTION * len(missing)
    keep, held = stratified_split(train.labels, frac, DERIVED_SPLIT_SEED)
    info = {"derived_from": "train", "method": "stratified", "seed": DERIVED_SPLIT_SEED,
            "fraction_each": DERIVED_FRACTION, "derived": missing}
    out["train"] = _take(train, keep, "train", {**info, "role": "remaining train"})
    if len(missing) == 1:
        out[missing[0]] = _take(train, held, missing[0], info)
    else:  # split the held-out block in two, stratified again
        held_labels = [train.labels[i] for i in held]
        a, b = stratified_split(held_labels, 0.5, DERIVED_SPLIT_SEED + 1)
        out["dev"] = _take(train, held[a], "dev", info)
        out["test"] = _take(train, held[b], "test", info)
    return out
