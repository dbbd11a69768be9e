"""Semi-supervised data: a labelled share of train, unlabeled text, ``--augment`` files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import AdvvizError
from .catalog import NAMED_DATASETS
from .dataset import TextDataset
from .files import LABEL_COLUMNS, TEXT_COLUMNS, _pick, read_lines, read_rows
from .labels import ids_mean_classes, parse_label_map, rows_to_dataset
from .named import load_splits


# --------------------------------------------------------------------------------------------
# semi-supervised data: a labelled share, unlabeled text, augmentation files

LABELED_SPLIT_STREAM = 14  # a seed stream of its own, so the labelled share is not the --max-train draw


def labeled_split(ds: TextDataset, fraction: float, seed: int) -> tuple[TextDataset, list[str], dict]:
    """(the labelled share, the texts whose labels are withheld, what was done): a seeded,
    stratified ``fraction`` of each class keeps its label (``--labeled-fraction``). Every class
    keeps at least one labelled example, or the fraction is refused."""
    if not 0 < fraction <= 1:
        raise AdvvizError(f"--labeled-fraction must be in (0, 1], got {fraction}")
    info = {"labeled_fraction": fraction, "seed": seed, "method": "stratified",
            "stream": LABELED_SPLIT_STREAM, "of_examples": len(ds)}
    if fraction >= 1:
        return ds, [], {**info, "labeled": len(ds), "unlabeled": 0}
    rng = np.random.default_rng([seed, LABELED_SPLIT_STREAM])
    labels = np.asarray(ds.labels)
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n = int(round(len(idx) * fraction))
        if n < 1:
            raise AdvvizError(f"--labeled-fraction {fraction} leaves no labelled example of class "
                              f"{ds.label_names[c]} ({len(idx)} in the train split); use a larger fraction")
        keep.append(idx[:n])
    kept = np.sort(np.concatenate(keep))
    rest = np.setdiff1d(np.arange(len(ds)), kept)
    labeled = TextDataset(ds.name, ds.split, [ds.texts[i] for i in kept], [ds.labels[i] for i in kept],
                          ds.label_names, ds.source, {**ds.split_info, "labeled_fraction": fraction},
                          ds.skipped_empty, ds.label_mapping)
    per_class = {ds.label_names[c]: int((labels[kept] == c).sum()) for c in np.unique(labels)}
    return labeled, [ds.texts[i] for i in rest], {**info, "labeled": len(kept), "unlabeled": len(rest),
                                                  "labeled_per_class": per_class}


def load_unlabeled(name: str, data_dir=None) -> tuple[list[str], dict]:
    """Texts without labels (``--unlabeled``): a named data set's train texts, or a file — ``.txt``
    (one text a line) or ``.csv/.tsv/.jsonl`` (optionally ``.gz``) with a text column (auto-detected,
    or the only column). No label column is needed and none is read: this is the one reader that
    accepts a file without labels."""
    if name in NAMED_DATASETS:
        texts = list(load_splits(name, data_dir)["train"].texts)
        return texts, {"name": name, "split": "train", "texts": len(texts)}
    path = Path(name).expanduser()
    if not os.path.lexists(path):
        raise AdvvizError(f"--unlabeled {name}: no such file, and not a known data set ({', '.join(NAMED_DATASETS)})")
    stem = path.name[:-3] if path.name.endswith(".gz") else path.name
    if stem.lower().endswith(".txt"):
        texts = [ln.strip() for ln in read_lines(path)]
    else:
        cols, rows, _ = read_rows(path)
        col = cols[0] if len(cols) == 1 else _pick(cols, None, TEXT_COLUMNS, "text", path)
        texts = ["" if r.get(col) is None else str(r.get(col)).strip() for r in rows]
    texts = [t for t in texts if t]
    if not texts:
        raise AdvvizError(f"--unlabeled {name}: no text in the file")
    return texts, {"name": str(path), "texts": len(texts)}


def read_augment(path: str | os.PathLike, train: TextDataset, label_map=None) -> TextDataset:
    """The rows of an augmentation file (``advviz augment --out``, ``eval --adversarial-csv``; any
    .csv/.tsv/.jsonl with a text and a label column) as labelled training examples.

    Labels are read against the training set, never against the file's own labels (a file whose
    rows are all ``positive`` is class ``positive``, whatever else it holds): a label is one of the
    training set's label names, exactly, or its integer id 0..C−1 where the training set's files
    write ids (a named set such as sst2-sent, or a file of integer labels; not a file of names,
    whose ids are only their sorted order). ``label_map`` (the run's ``--label-map``) applies
    first. Anything else is one line naming the file, the line and the allowed labels."""
    path = Path(path).expanduser()
    if not os.path.lexists(path):
        raise AdvvizError(f"--augment {path}: no such file")
    cols, rows, lines = read_rows(path)
    if not rows:
        raise AdvvizError(f"--augment {path}: the file has a header but no rows")
    tc = _pick(cols, None, TEXT_COLUMNS, "text", path)
    lc = _pick(cols, None, LABEL_COLUMNS, "label", path)
    ds = rows_to_dataset(rows, tc, lc, train.name, "augment", path, label_names=train.label_names, lines=lines,
                         label_map=parse_label_map(label_map), whose="the training set's",
                         ids=ids_mean_classes(train.name, train.label_mapping))
    return TextDataset(train.name, "augment", ds.texts, ds.labels, list(train.label_names), str(path),
                       {}, ds.skipped_empty, train.label_mapping)


def concat(a: TextDataset, b: TextDataset, info: dict) -> TextDataset:
    """``a`` followed by ``b`` (same labels), with ``info`` added to ``a``'s split_info."""
    return TextDataset(a.name, a.split, a.texts + b.texts, a.labels + b.labels, a.label_names, a.source,
                       {**a.split_info, **info}, a.skipped_empty, a.label_mapping)
