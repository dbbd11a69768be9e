"""Named text-classification data sets and local files.

A data set is read from a *data directory* (``--data-dir``, env ``ADVVIZ_DATA_DIR``, default
``../shared/data`` next to the checkout) and, when a name is not found there, from the Hugging
Face hub if the optional ``datasets`` package and the network are available.

Every split is returned as a :class:`TextDataset` (texts, integer labels, label names). Sets
without a dev or test split get a seeded, stratified split whose parameters are recorded in
:attr:`TextDataset.split_info` (and from there in every checkpoint's config).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import AdvvizError

csv.field_size_limit(1 << 30)  # IMDB reviews and hostile 50 MB lines must not trip the csv module

DATA_DIR_ENV = "ADVVIZ_DATA_DIR"
TEXT_COLUMNS = ("text", "sentence", "review", "content", "document", "body", "x")
LABEL_COLUMNS = ("label", "labels", "y", "class", "target", "sentiment", "category")
SPLITS = ("train", "dev", "test")
DERIVED_SPLIT_SEED = 13  # fixed so every run derives the same dev/test split
DERIVED_FRACTION = 0.1  # share of the source split held out for each derived split


@dataclass(frozen=True)
class DatasetSpec:
    """Where a named data set lives: one file per available split, and its columns."""

    name: str
    files: dict[str, str]  # split -> file name in the data directory
    text_col: str
    label_col: str
    label_names: tuple[str, ...]
    hub_id: str  # Hugging Face dataset id used as a fallback
    description: str
    derive: tuple[str, ...] = ("dev", "test")  # missing splits to carve out of train


REGISTRY: dict[str, DatasetSpec] = {
    s.name: s
    for s in [
        DatasetSpec("sst2", {"train": "sst2_glue_train.tsv.gz", "dev": "sst2_glue_dev.tsv.gz"},
                    "sentence", "label", ("negative", "positive"), "stanfordnlp/sst2",
                    "GLUE SST-2 (phrases in train; papers report on dev; GLUE test is unlabelled)",
                    derive=()),
        DatasetSpec("sst2-sent", {"train": "sst2_sent_train.tsv.gz", "dev": "sst2_sent_dev.tsv.gz",
                                  "test": "sst2_sent_test.tsv.gz"},
                    "text", "label", ("negative", "positive"), "SetFit/sst2",
                    "SST-2 sentence level (Kim 2014 splits)"),
        DatasetSpec("imdb", {"train": "imdb_train.tsv.gz", "test": "imdb_test.tsv.gz"},
                    "text", "label", ("negative", "positive"), "stanfordnlp/imdb",
                    "Large Movie Review v1.0 (Maas et al. 2011)"),
        DatasetSpec("agnews", {"train": "agnews_trainsubset10k.tsv.gz", "test": "agnews_test.tsv.gz"},
                    "text", "label", ("World", "Sports", "Business", "Sci/Tech"), "fancyzhx/ag_news",
                    "AG's News, 10k train subset and full test"),
        DatasetSpec("mr", {"train": "mr.tsv.gz"}, "text", "label", ("negative", "positive"),
                    "cornell-movie-review-data/rotten_tomatoes", "Pang & Lee 2005 sentence polarity"),
        DatasetSpec("subj", {"train": "subj.tsv.gz"}, "text", "label", ("subjective", "objective"),
                    "SetFit/subj", "Pang & Lee 2004 subjectivity"),
    ]
}


@dataclass
class TextDataset:
    """One split: parallel lists of texts and integer labels."""

    name: str
    split: str
    texts: list[str]
    labels: list[int]
    label_names: list[str]
    source: str = ""  # where it was read from
    split_info: dict = field(default_factory=dict)  # how a derived split was made
    skipped_empty: int = 0
    label_mapping: dict | None = None  # string label -> id, when the file had string labels

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def subset(self, n: int | None, seed: int = 0) -> "TextDataset":
        """The first ``n`` examples of a seeded permutation (all of them when n is None or >= len)."""
        if n is None or n >= len(self):
            return self
        idx = np.random.default_rng(seed).permutation(len(self))[:n]
        return TextDataset(self.name, self.split, [self.texts[i] for i in idx],
                           [self.labels[i] for i in idx], self.label_names, self.source,
                           {**self.split_info, "subset": {"n": n, "seed": seed}},
                           self.skipped_empty, self.label_mapping)


def default_data_dir() -> Path:
    """``$ADVVIZ_DATA_DIR``, else ``../shared/data`` beside the checkout, else ``./data``."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    here = Path(__file__).resolve().parent.parent
    for cand in (here.parent / "shared" / "data", Path.cwd().parent / "shared" / "data", Path("data")):
        if cand.is_dir():
            return cand
    return here.parent / "shared" / "data"


def _resolve_dir(data_dir: str | os.PathLike | None) -> Path:
    d = Path(data_dir).expanduser() if data_dir else default_data_dir()
    if not d.is_dir():
        raise AdvvizError(f"data directory {d} does not exist; pass --data-dir DIR or set "
                          f"{DATA_DIR_ENV}=DIR (it should hold the *.tsv.gz files)")
    return d


# --------------------------------------------------------------------------------------------
# reading tables


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise AdvvizError(f"{path}: not a readable gzip file ({e})") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise AdvvizError(f"{path}: line {line}: bytes that are not UTF-8 "
                          f"({raw[e.start:e.start + 4]!r}); re-encode the file as UTF-8") from None


def read_table(path: str | os.PathLike) -> tuple[list[str], list[dict]]:
    """Read a .csv/.tsv/.jsonl file (optionally .gz) into (columns, rows)."""
    path = Path(path)
    stem = path.name[:-3] if path.name.endswith(".gz") else path.name
    kind = stem.rsplit(".", 1)[-1].lower()
    if kind not in ("csv", "tsv", "jsonl", "json"):
        raise AdvvizError(f"{path}: unsupported file type '.{kind}' (use .csv, .tsv or .jsonl, optionally .gz)")
    text = _read_text(path)
    if kind in ("jsonl", "json"):
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise AdvvizError(f"{path}: line {i}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise AdvvizError(f"{path}: line {i}: each line must be a JSON object")
            rows.append(obj)
        cols = list(rows[0].keys()) if rows else []
        return cols, rows
    # TSV files in the wild (and ours) carry literal quotes: read them unquoted.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if kind == "tsv" else ",",
                        quoting=csv.QUOTE_NONE if kind == "tsv" else csv.QUOTE_MINIMAL)
    try:
        header = next(reader)
    except StopIteration:
        raise AdvvizError(f"{path}: the file is empty") from None
    header = [h.strip() for h in header]
    rows = []
    for r in reader:
        if not r:
            continue
        rows.append(dict(zip(header, r)))
    return header, rows


def _pick(cols: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, path) -> str:
    if wanted:
        if wanted not in cols:
            raise AdvvizError(f"{path}: no column '{wanted}'; columns found: {', '.join(cols) or '(none)'}")
        return wanted
    lower = {c.lower(): c for c in cols}
    for c in candidates:
        if c in lower:
            return lower[c]
    raise AdvvizError(f"{path}: no {what} column found (looked for {', '.join(candidates)}); "
                      f"columns found: {', '.join(cols) or '(none)'}; name it with --{what}-col")


def rows_to_dataset(rows, text_col, label_col, name, split, source,
                    label_names=None, label_mapping=None) -> TextDataset:
    """Turn raw rows into a TextDataset: strip texts, skip empty ones, make labels integers.

    Integer labels are kept. Any non-integer label turns the whole column into strings mapped
    to ids in sorted order (unless ``label_mapping`` is given, e.g. the train split's), and the
    mapping is recorded.
    """
    texts, raw_labels, skipped = [], [], 0
    for r in rows:
        t = r.get(text_col)
        t = "" if t is None else str(t).strip()
        if not t:
            skipped += 1
            continue
        texts.append(t)
        raw_labels.append(r.get(label_col))
    if label_mapping is None:
        try:
            labels = [int(str(v).strip()) for v in raw_labels]
            if any(v < 0 for v in labels):
                raise ValueError
        except (ValueError, TypeError):
            keys = sorted({str(v).strip() for v in raw_labels})
            label_mapping = {k: i for i, k in enumerate(keys)}
    if label_mapping is not None:
        try:
            labels = [label_mapping[str(v).strip()] for v in raw_labels]
        except KeyError as e:
            raise AdvvizError(f"{source}: label {e.args[0]!r} was not seen in the train split") from None
        label_names = list(label_mapping)
    if label_names is None:
        label_names = [str(i) for i in range(max(labels, default=0) + 1)]
    elif labels and max(labels) >= len(label_names):
        raise AdvvizError(f"{source}: label {max(labels)} is out of range for {len(label_names)} classes")
    return TextDataset(name, split, texts, labels, list(label_names), str(source),
                       skipped_empty=skipped, label_mapping=label_mapping)


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


# --------------------------------------------------------------------------------------------
# public entry points


def _load_named_local(spec: DatasetSpec, d: Path) -> dict[str, TextDataset]:
    out = {}
    mapping = None
    for split in ("train", "dev", "test"):
        if split not in spec.files:
            continue
        path = d / spec.files[split]
        cols, rows = read_table(path)
        text_col = _pick(cols, spec.text_col, (), "text", path)
        label_col = _pick(cols, spec.label_col, (), "label", path)
        ds = rows_to_dataset(rows, text_col, label_col, spec.name, split, path,
                             label_names=spec.label_names, label_mapping=mapping)
        mapping = ds.label_mapping
        out[split] = ds
    return derive_splits(out, spec.derive)


def _load_from_hub(spec: DatasetSpec) -> dict[str, TextDataset]:
    try:
        import datasets  # optional: pip install advviz[hub]
    except ImportError:
        raise AdvvizError(f"data set '{spec.name}' is not in the data directory and the Hugging Face "
                          f"fallback needs the 'datasets' package (pip install 'advviz[hub]')") from None
    try:
        dd = datasets.load_dataset(spec.hub_id)
    except Exception as e:  # network errors come in many types
        raise AdvvizError(f"data set '{spec.name}' is not in the data directory and the hub copy "
                          f"'{spec.hub_id}' could not be fetched ({type(e).__name__}); "
                          f"pass --data-dir DIR") from None
    names = {"train": "train", "validation": "dev", "test": "test"}
    out = {}
    for hub_split, split in names.items():
        if hub_split in dd:
            t = dd[hub_split]
            cols = t.column_names
            text_col = _pick(cols, None, TEXT_COLUMNS, "text", spec.hub_id)
            label_col = _pick(cols, None, LABEL_COLUMNS, "label", spec.hub_id)
            ds = rows_to_dataset(t, text_col, label_col, spec.name, split, f"hub:{spec.hub_id}",
                                 label_names=spec.label_names)
            if split == "test" and ds.labels and min(ds.labels) < 0:
                continue  # unlabelled test (GLUE)
            out[split] = ds
    return derive_splits(out, spec.derive)


_CACHE: dict[tuple, dict[str, TextDataset]] = {}


def load_splits(name: str, data_dir=None, text_col: str | None = None,
                label_col: str | None = None) -> dict[str, TextDataset]:
    """All splits of a named data set or a local file, with derived splits filled in."""
    path = Path(name).expanduser()
    key = (name, str(data_dir), text_col, label_col)
    if key in _CACHE:
        return _CACHE[key]
    if name in REGISTRY:
        spec = REGISTRY[name]
        d = Path(data_dir).expanduser() if data_dir else default_data_dir()
        if d.is_dir() and all((d / f).is_file() for f in spec.files.values()):
            out = _load_named_local(spec, d)
        elif data_dir and not d.is_dir():
            _resolve_dir(data_dir)  # raises with the how-to message
            raise AssertionError  # unreachable
        else:
            out = _load_from_hub(spec)
    elif path.is_file():
        cols, rows = read_table(path)
        if not rows:
            raise AdvvizError(f"{path}: the file has a header but no rows")
        tc = _pick(cols, text_col, TEXT_COLUMNS, "text", path)
        lc = _pick(cols, label_col, LABEL_COLUMNS, "label", path)
        ds = rows_to_dataset(rows, tc, lc, str(path), "train", path)
        if len(ds) == 0:
            raise AdvvizError(f"{path}: every text is empty")
        out = derive_splits({"train": ds})
    else:
        looks_like_path = any(ch in name for ch in "/\\.")
        if looks_like_path:
            raise AdvvizError(f"no such file: {name}")
        raise AdvvizError(f"unknown data set '{name}'; known: {', '.join(REGISTRY)} "
                          f"(or a path to a .csv/.tsv/.jsonl file)")
    _CACHE[key] = out
    return out


def load_dataset(name: str, split: str = "train", data_dir=None, text_col=None,
                 label_col=None) -> TextDataset:
    """One split of a named data set or a local file."""
    splits = load_splits(name, data_dir, text_col, label_col)
    if split not in splits:
        raise AdvvizError(f"data set '{name}' has no split '{split}'; it has: {', '.join(splits)}")
    return splits[split]


def list_datasets(data_dir=None) -> list[dict]:
    """One row per known name: where it is found, split sizes and label names."""
    d = Path(data_dir).expanduser() if data_dir else default_data_dir()
    rows = []
    for spec in REGISTRY.values():
        local = d.is_dir() and all((d / f).is_file() for f in spec.files.values())
        row = {"name": spec.name, "description": spec.description,
               "found": str(d) if local else f"not local (hub: {spec.hub_id})",
               "labels": list(spec.label_names), "sizes": {}}
        if local:
            splits = load_splits(spec.name, d)
            row["sizes"] = {s: len(v) for s, v in splits.items()}
            derived = [s for s, v in splits.items() if v.split_info.get("derived_from") and s != "train"]
            row["derived"] = derived
        rows.append(row)
    return rows
