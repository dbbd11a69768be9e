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
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import AdvvizError
from .limits import max_data_bytes, too_much_data

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
        idx = subset_indices(len(self), n, seed)
        return TextDataset(self.name, self.split, [self.texts[i] for i in idx],
                           [self.labels[i] for i in idx], self.label_names, self.source,
                           {**self.split_info, "subset": {"n": n, "seed": seed}},
                           self.skipped_empty, self.label_mapping)


def subset_indices(total: int, n: int | None, seed: int = 0) -> list[int]:
    """The indices :meth:`TextDataset.subset` keeps, in its order (all, in order, when n is None or
    >= total)."""
    if n is None or n >= total:
        return list(range(total))
    return [int(i) for i in np.random.default_rng(seed).permutation(total)[:n]]


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


READ_CHUNK = 1 << 24  # bytes per read: a signal (Ctrl-C, SIGTERM) is handled between two chunks


def _read_limited(f, limit: int, where: str, decompressed: bool) -> bytes:
    """At most ``limit`` bytes of the open binary file ``f``, read in chunks; one byte more is an
    error naming the limit (``limits.too_much_data``)."""
    out, total = [], 0
    while True:
        chunk = f.read(min(READ_CHUNK, limit + 1 - total))
        if not chunk:
            return b"".join(out)
        total += len(chunk)
        if total > limit:
            raise too_much_data(where, decompressed)
        out.append(chunk)


def _read_bytes(path: Path, allow_stdin: bool = False) -> bytes:
    """The (decompressed) bytes of a data file: a regular file (``-``: standard input, where the
    caller allows it), at most ``limits.max_data_bytes()`` once decompressed (``--max-data-mb``).
    A gzip bomb, ``/dev/zero`` on standard input or a file that grows stop at the limit with one
    line; a FIFO or a device is refused, never waited on. Read in chunks, so that a signal stops
    a long read within a chunk's time."""
    import stat

    limit = max_data_bytes()
    if allow_stdin and str(path) == "-":
        try:
            return _read_limited(sys.stdin.buffer, limit, "standard input", False)
        except OSError as e:
            raise AdvvizError(f"cannot read standard input ({e.strerror or e})") from None
    try:
        st = os.stat(path)
    except OSError as e:
        raise AdvvizError(f"{path}: cannot read the data file ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise AdvvizError(f"{path}: not a regular file" + (" (give a file, or - for standard input)"
                                                           if allow_stdin else ""))
    gz = path.suffix == ".gz"
    if not gz and st.st_size > limit:
        raise too_much_data(str(path))
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO swapped in: no wait
        with os.fdopen(fd, "rb") as raw:
            if not stat.S_ISREG(os.fstat(raw.fileno()).st_mode):
                raise AdvvizError(f"{path}: not a regular file")
            if not gz:
                return _read_limited(raw, limit, str(path), False)
            with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                return _read_limited(f, limit, str(path), True)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise AdvvizError(f"{path}: not a readable gzip file ({e})") from None
    except OSError as e:
        raise AdvvizError(f"{path}: cannot read the data file ({e.strerror or e})") from None


def _read_text(path: Path, allow_stdin: bool = False) -> str:
    raw = _read_bytes(path, allow_stdin)
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        where = "standard input" if allow_stdin and str(path) == "-" else path
        raise AdvvizError(f"{where}: line {line}: bytes that are not UTF-8 "
                          f"({raw[e.start:e.start + 4]!r}); re-encode the file as UTF-8") from None


def read_lines(path: str | os.PathLike, allow_stdin: bool = False) -> list[str]:
    """The lines of a text file of one text a line (``inspect --input``, ``--unlabeled F.txt``),
    read as every data file is (regular files only, bounded, UTF-8); ``-`` is standard input
    where ``allow_stdin``."""
    return _read_text(Path(path), allow_stdin).splitlines()


def _no_duplicate_keys(where: str):
    def hook(pairs):
        seen = set()
        for k, _ in pairs:
            if k in seen:
                raise AdvvizError(f"{where}: key '{k}' appears twice in one object")
            seen.add(k)
        return dict(pairs)
    return hook


def read_rows(path: str | os.PathLike) -> tuple[list[str], list[dict], list[int]]:
    """(columns, rows, line numbers) of a .csv/.tsv/.jsonl file (optionally .gz). A header naming
    a column twice, a row with more or fewer fields than the header and a JSON object repeating a
    key are errors naming the file and line (they would silently shift or drop a column)."""
    path = Path(path)
    stem = path.name[:-3] if path.name.endswith(".gz") else path.name
    kind = stem.rsplit(".", 1)[-1].lower()
    if kind not in ("csv", "tsv", "jsonl", "json"):
        raise AdvvizError(f"{path}: unsupported file type '.{kind}' (use .csv, .tsv or .jsonl, optionally .gz)")
    text = _read_text(path)
    rows, lines = [], []
    if kind in ("jsonl", "json"):
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line, object_pairs_hook=_no_duplicate_keys(f"{path}: line {i}"))
            except json.JSONDecodeError as e:
                raise AdvvizError(f"{path}: line {i}: not valid JSON ({e.msg})") from None
            except RecursionError:
                raise AdvvizError(f"{path}: line {i}: JSON nested too deeply") from None
            if not isinstance(obj, dict):
                raise AdvvizError(f"{path}: line {i}: each line must be a JSON object")
            rows.append(obj)
            lines.append(i)
        cols = list(rows[0].keys()) if rows else []
        return cols, rows, lines
    # TSV files in the wild (and ours) carry literal quotes: read them unquoted.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if kind == "tsv" else ",",
                        quoting=csv.QUOTE_NONE if kind == "tsv" else csv.QUOTE_MINIMAL)
    try:
        header = next(reader)
    except StopIteration:
        raise AdvvizError(f"{path}: the file is empty") from None
    except csv.Error as e:
        raise AdvvizError(f"{path}: line 1: {e}") from None
    header = [h.strip() for h in header]
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise AdvvizError(f"{path}: line 1: column '{dup[0]}' appears twice in the header; rename one")
    start = reader.line_num + 1
    try:
        for r in reader:
            line, start = start, reader.line_num + 1
            if not r:
                continue
            if len(r) != len(header):
                sep = "a tab" if kind == "tsv" else "a comma (quote such texts)"
                raise AdvvizError(f"{path}: line {line}: {len(r)} field{'s' if len(r) != 1 else ''} but the header "
                                  f"has {len(header)} ({sep} inside a text, or a missing field?)")
            rows.append(dict(zip(header, r)))
            lines.append(line)
    except csv.Error as e:
        raise AdvvizError(f"{path}: line {reader.line_num}: {e}") from None
    return header, rows, lines


def read_table(path: str | os.PathLike) -> tuple[list[str], list[dict]]:
    """Read a .csv/.tsv/.jsonl file (optionally .gz) into (columns, rows)."""
    cols, rows, _ = read_rows(path)
    return cols, rows


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


def _label_value(v, where: str) -> str:
    """A label as a stripped string; a missing, empty or non-scalar label is an error at ``where``."""
    if v is None:
        raise AdvvizError(f"{where}: no label; every row needs one")
    if isinstance(v, (dict, list)):
        raise AdvvizError(f"{where}: the label must be a string or an integer, not {type(v).__name__}")
    v = str(v).strip()
    if not v:
        raise AdvvizError(f"{where}: empty label; every row needs one")
    return v


def _as_int(v: str) -> int | None:
    try:
        return int(v)
    except ValueError:
        return None


def _shown(values, n: int = 6) -> str:
    values = list(values)
    return ", ".join(str(v) for v in values[:n]) + (f", … ({len(values)} distinct)" if len(values) > n else "")


def rows_to_dataset(rows, text_col, label_col, name, split, source,
                    label_names=None, label_mapping=None, lines=None) -> TextDataset:
    """Turn raw rows into a TextDataset: strip texts, skip empty ones, make labels integers.

    Labels are validated here, as the data is read: a row with a text but a missing or empty label
    is an error naming the file and line (``lines``: the file line of each row). Integer labels
    must be 0..C−1 with every class present (labels {1, 5} or one stray 100000 are refused, never
    turned into 6 or 100,001 classes); with ``label_names`` (a named data set) they must lie in
    its range. Any non-integer label turns the whole column into names mapped to ids in sorted
    order (unless ``label_mapping`` is given, e.g. the train split's), and the mapping is recorded.
    """
    texts, raw_labels, where, skipped = [], [], [], 0
    for i, r in enumerate(rows):
        t = r.get(text_col)
        t = "" if t is None else str(t).strip()
        if not t:
            skipped += 1
            continue
        at = f"{source}: line {lines[i]}" if lines is not None else f"{source}: row {i + 1}"
        texts.append(t)
        raw_labels.append(_label_value(r.get(label_col), at))
        where.append(at)
    ints = None
    if label_mapping is None:
        ints = [_as_int(v) for v in raw_labels]
        if any(v is None for v in ints):
            ints = None
            label_mapping = {k: i for i, k in enumerate(sorted(set(raw_labels)))}
    if label_mapping is not None:
        labels = []
        for v, at in zip(raw_labels, where):
            key = v if v in label_mapping or _as_int(v) is None else str(_as_int(v))
            if key not in label_mapping:
                raise AdvvizError(f"{at}: label {v!r} was not seen in the train split "
                                  f"(labels there: {_shown(label_mapping)})")
            labels.append(label_mapping[key])
        label_names = list(label_mapping)
    elif label_names is not None:
        labels = ints
        for v, at in zip(labels, where):
            if not 0 <= v < len(label_names):
                raise AdvvizError(f"{at}: label {v} is out of range for the {len(label_names)} classes "
                                  f"0..{len(label_names) - 1} ({', '.join(label_names)})")
    else:
        labels = ints
        found = sorted(set(labels))
        if found and found != list(range(len(found))):
            raise AdvvizError(f"{source}: integer labels must be 0..C−1 with every class present, found "
                              f"{_shown(found)}; renumber them 0..{len(found) - 1} (or write the labels as "
                              f"names, e.g. neg/pos, which are mapped to ids in sorted order)")
        label_names = [str(i) for i in range(len(found))]
    return TextDataset(name, split, texts, labels, list(label_names), str(source),
                       skipped_empty=skipped, label_mapping=label_mapping)


def check_classes(ds: "TextDataset", source) -> None:
    """A data set to learn from needs at least two classes."""
    present = sorted(set(ds.labels))
    if len(present) < 2:
        only = f" ({ds.label_names[present[0]]})" if present else ""
        raise AdvvizError(f"{source}: only one class{only} in the labels; a classifier needs at least two")


def align_labels(ds: "TextDataset", label_names, model_name: str, dataset: str) -> "TextDataset":
    """``ds`` with its label ids in the order of a model's ``label_names``. Labels with names are
    matched by name (ids reordered when only the order differs); a file of integer labels
    ``0..C−1`` carries no names and is taken by position, so its labels must be below the model's
    number of classes. Anything else is one line, as ``compare`` / ``project`` / ``report`` do:
    evaluating on another label set would be another task (accuracy 0.0, or a traceback)."""
    model_names, names = list(label_names), list(ds.label_names)
    if names == model_names:
        return ds
    used = sorted(set(ds.labels))
    positional = ds.label_mapping is None and names == [str(i) for i in range(len(names))]
    if positional and (not used or used[-1] < len(model_names)):
        return TextDataset(ds.name, ds.split, ds.texts, ds.labels, model_names, ds.source,
                           {**ds.split_info, "labels_by_position_for": model_name}, ds.skipped_empty, None)
    if positional or not all(names[i] in model_names for i in used) or len(set(model_names)) != len(model_names):
        raise AdvvizError(f"{model_name} was trained on labels {model_names} but {dataset} has {names}; "
                          f"evaluate it on a data set with the same labels")
    to_model = {i: model_names.index(n) for i, n in enumerate(names) if n in model_names}
    return TextDataset(ds.name, ds.split, ds.texts, [to_model[y] for y in ds.labels], model_names, ds.source,
                       {**ds.split_info, "labels_aligned_to": model_name}, ds.skipped_empty, ds.label_mapping)


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
        cols, rows, lines = read_rows(path)
        text_col = _pick(cols, spec.text_col, (), "text", path)
        label_col = _pick(cols, spec.label_col, (), "label", path)
        ds = rows_to_dataset(rows, text_col, label_col, spec.name, split, path,
                             label_names=spec.label_names, label_mapping=mapping, lines=lines)
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
            if split == "test" and any(int(v) < 0 for v in t[label_col][:100]):
                continue  # unlabelled test (GLUE: label -1)
            out[split] = rows_to_dataset(t, text_col, label_col, spec.name, split, f"hub:{spec.hub_id}",
                                         label_names=spec.label_names)
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
    elif os.path.lexists(path) and (path.is_file() or not path.is_dir()):
        cols, rows, lines = read_rows(path)
        if not rows:
            raise AdvvizError(f"{path}: the file has a header but no rows")
        tc = _pick(cols, text_col, TEXT_COLUMNS, "text", path)
        lc = _pick(cols, label_col, LABEL_COLUMNS, "label", path)
        ds = rows_to_dataset(rows, tc, lc, str(path), "train", path, lines=lines)
        if len(ds) == 0:
            raise AdvvizError(f"{path}: every text is empty")
        check_classes(ds, path)
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
    if name in REGISTRY:
        texts = list(load_splits(name, data_dir)["train"].texts)
        return texts, {"name": name, "split": "train", "texts": len(texts)}
    path = Path(name).expanduser()
    if not os.path.lexists(path):
        raise AdvvizError(f"--unlabeled {name}: no such file, and not a known data set ({', '.join(REGISTRY)})")
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


def read_augment(path: str | os.PathLike, train: TextDataset) -> TextDataset:
    """The rows of an augmentation file (``advviz augment --out``; any .csv/.tsv/.jsonl with a text
    and a label column) as labelled training examples, their labels read with the training set's
    label names (and mapping): every row needs a label the training set has, checked as for a
    data set (one line naming the file and line)."""
    path = Path(path).expanduser()
    if not os.path.lexists(path):
        raise AdvvizError(f"--augment {path}: no such file")
    cols, rows, lines = read_rows(path)
    if not rows:
        raise AdvvizError(f"--augment {path}: the file has a header but no rows")
    tc = _pick(cols, None, TEXT_COLUMNS, "text", path)
    lc = _pick(cols, None, LABEL_COLUMNS, "label", path)
    ds = rows_to_dataset(rows, tc, lc, train.name, "augment", path,
                         label_names=None if train.label_mapping else train.label_names,
                         label_mapping=train.label_mapping, lines=lines)
    return TextDataset(train.name, "augment", ds.texts, ds.labels, list(train.label_names), str(path),
                       {}, ds.skipped_empty, train.label_mapping)


def concat(a: TextDataset, b: TextDataset, info: dict) -> TextDataset:
    """``a`` followed by ``b`` (same labels), with ``info`` added to ``a``'s split_info."""
    return TextDataset(a.name, a.split, a.texts + b.texts, a.labels + b.labels, a.label_names, a.source,
                       {**a.split_info, **info}, a.skipped_empty, a.label_mapping)


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
