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
import decimal
import gzip
import importlib.util
import io
import json
import math
import os
import re
import sys
import unicodedata
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


def data_dir_search(data_dir: str | os.PathLike | None = None) -> list[tuple[str, Path | None]]:
    """Where a named data set is looked for, in order: (where the candidate comes from, its path).

    1. ``--data-dir DIR``                          when given, the only directory looked in
    2. ``$ADVVIZ_DATA_DIR``                        when set, the only directory looked in
    3. ``../shared/data`` beside a source checkout (the folder holding pyproject.toml and advviz/)
    4. ``./data`` in the working directory
    5. the Hugging Face hub (needs ``pip install 'advviz[hub]'``; a data set missing locally is
       fetched from there)

    A file path given as the data set (``--dataset my.tsv``) never needs any of these."""
    if data_dir:
        return [("--data-dir", Path(data_dir).expanduser())]
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return [(f"${DATA_DIR_ENV}", Path(env).expanduser())]
    out = []
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file():
        out.append(("beside the checkout", checkout.parent / "shared" / "data"))
    out.append(("./data", Path.cwd() / "data"))
    return out


def default_data_dir() -> Path:
    """The first directory of :func:`data_dir_search` that exists (else the first candidate)."""
    found = data_dir_search()
    return next((p for _, p in found if p.is_dir()), found[0][1])


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
            except ValueError as e:  # an integer of more than 4,300 digits (Python's int limit)
                raise AdvvizError(f"{path}: line {i}: a number too long to read ({str(e).split(':')[0]})") from None
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


# --------------------------------------------------------------------------------------------
# labels: what a label is, and how labels become class ids (one set of rules for data sets,
# their splits, --augment files and --label-map)

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_MAX_ID_DIGITS = 18  # a "class id" of 10**18 or more is a stray value, never a class


def parse_label(v, where: str) -> int | str:
    """One label as read: an ``int`` when it is a number, else its name (a stripped string).

    Numbers are compared as numbers: ``1``, ``1.0``, ``+1``, `` 1 ``, ``1e0`` and the JSON numbers
    1 and 1.0 are all class 1 (a column written by pandas or a JSON tool must not turn one class
    into two); a number that is not an integer (``1.5``, JSON ``NaN``) is refused, and so is one
    too large to be a class id. Digits are ASCII: ``١`` or ``1_0`` are names (``int()`` would read
    them as numbers). Refused at ``where``: no label, an empty one, a list or object, JSON
    ``true``/``false`` (0/1 or a name? say which), and a name holding a control or invisible
    format character (``pos`` + a zero-width space would silently be a class of its own; a tab
    would break the TSV ``advviz augment`` writes)."""
    if v is None:
        raise AdvvizError(f"{where}: no label; every row needs one")
    if isinstance(v, bool):
        raise AdvvizError(f"{where}: label {str(v).lower()} is a boolean, not a label; write 0/1 or names")
    if isinstance(v, (dict, list)):
        raise AdvvizError(f"{where}: the label must be a string or an integer, not {type(v).__name__}")
    if isinstance(v, int):
        return _class_id(v, str(v), where)
    if isinstance(v, float):
        if not (math.isfinite(v) and v.is_integer()):
            raise AdvvizError(f"{where}: label {v} is a number but not an integer; class ids are 0..C−1")
        return _class_id(int(v), repr(v), where)
    s = str(v).strip()
    if not s:
        raise AdvvizError(f"{where}: empty label; every row needs one")
    if _NUMBER.fullmatch(s):
        d = decimal.Decimal(s)
        if d and d.adjusted() >= _MAX_ID_DIGITS:
            raise AdvvizError(f"{where}: label {s[:24]!r} is too large to be a class id (0..C−1)")
        if d != d.to_integral_value():
            raise AdvvizError(f"{where}: label {s!r} is a number but not an integer; class ids are 0..C−1 "
                              f"(for names, write words)")
        return int(d)
    bad = next((c for c in s if unicodedata.category(c) in ("Cc", "Cf")), None)
    if bad is not None:
        raise AdvvizError(f"{where}: label {s!r} holds the invisible character U+{ord(bad):04X}; "
                          f"a label may not hold control or format characters")
    return s


def _class_id(n: int, shown: str, where: str) -> int:
    if abs(n) >= 10 ** _MAX_ID_DIGITS:
        raise AdvvizError(f"{where}: label {shown[:24]} is too large to be a class id (0..C−1)")
    return n


def parse_label_map(spec) -> dict[int | str, int | str] | None:
    """``--label-map``: what the labels of a data file mean, for a file whose column mixes names and
    numbers (or numbers that are not 0..C−1). ``FROM=TO`` pairs (``pos=1,neg=0,1=1,0=0``), a JSON
    file holding one object (``{"pos": 1, "neg": 0}``, for names with ``,`` or ``=``), or an
    already parsed mapping (a checkpoint's ``data.label_map``). Both sides are read as labels are
    (``1.0`` is 1). Each label is replaced by what the map says before the usual checks; a label
    the map does not name is kept as it is, so a column that still mixes names and numbers is
    still refused. One map serves every labelled input of a run: each split, ``--augment`` files,
    and (recorded in the checkpoint) later reads of the same data set by ``eval`` and the others."""
    if spec is None:
        return None
    if isinstance(spec, dict):
        items, src = list(spec.items()), "--label-map"
    else:
        spec, src = str(spec), f"--label-map {spec}"
        path = Path(spec).expanduser()
        if os.path.lexists(path):
            try:
                obj = json.loads(_read_text(path), object_pairs_hook=_no_duplicate_keys(src))
            except (json.JSONDecodeError, RecursionError):
                raise AdvvizError(f"{src}: not a JSON object of label -> label") from None
            if not isinstance(obj, dict):
                raise AdvvizError(f"{src}: the file must hold one JSON object, e.g. {{\"pos\": 1, \"neg\": 0}}")
            items = list(obj.items())
        elif "=" not in spec:
            raise AdvvizError(f"{src}: no such file, and not FROM=TO pairs (e.g. --label-map pos=1,neg=0)")
        else:
            items = []
            for part in spec.split(","):
                k, eq, v = part.partition("=")
                if not eq or not k.strip() or not v.strip():
                    raise AdvvizError(f"{src}: {part.strip()!r} is not FROM=TO (e.g. --label-map pos=1,neg=0)")
                items.append((k, v))
    out: dict = {}
    for k, v in items:
        key, value = parse_label(k, f"{src}: {k!r}"), parse_label(v, f"{src}: {k!r}")
        if key in out and out[key] != value:
            raise AdvvizError(f"{src}: label {key!r} is mapped twice ({out[key]!r} and {value!r})")
        out[key] = value
    if not out:
        raise AdvvizError(f"{src}: the map is empty")
    return out


def label_map_record(label_map) -> dict | None:
    """A parsed ``--label-map`` as JSON (keys as text; :func:`parse_label_map` reads it back)."""
    return None if label_map is None else {str(k): v for k, v in label_map.items()}


def _shown(values, n: int = 6) -> str:
    values = list(values)
    return ", ".join(str(v) for v in values[:n]) + (f", … ({len(values)} distinct)" if len(values) > n else "")


def _refuse_mixed(raw: list, pos: list[str], source, mapped: bool) -> None:
    """Names and numbers in one column are refused: is ``1`` the class named ``pos`` or a class of
    its own? Training four classes on pos/neg/1/0 (or on 1/1.0 read as two names) is a silently
    different task."""
    name = next((i for i, v in enumerate(raw) if isinstance(v, str)), None)
    num = next((i for i, v in enumerate(raw) if isinstance(v, int)), None)
    if name is None or num is None:
        return
    how = ("--label-map leaves them mixed: map every name to a number (or every number to a name)" if mapped else
           "write them all one way, or say what each means with --label-map (e.g. --label-map pos=1,neg=0)")
    raise AdvvizError(f"{source}: the labels mix names and numbers ({raw[name]!r} at {pos[name]}, {raw[num]} at "
                      f"{pos[num]}); {how}")


def _refuse_twins(raw: list[str], pos: list[str], source) -> None:
    """Names that differ only in case or Unicode form (``Positive``/``positive``, ``ｐｏｓ``/``pos``)
    are refused rather than trained as separate classes."""
    first: dict[str, int] = {}
    seen: set[str] = set()
    for i, v in enumerate(raw):
        if v in seen:
            continue
        seen.add(v)
        key = unicodedata.normalize("NFKC", v).casefold()
        j = first.setdefault(key, i)
        if raw[j] != v:
            raise AdvvizError(f"{source}: labels {raw[j]!r} ({pos[j]}) and {v!r} ({pos[i]}) differ only in case or "
                              f"Unicode form; write them one way (or map one onto the other: --label-map {v}={raw[j]})")


def _to_known(raw: list, pos: list[str], source, known: list[str], ids: bool, whose: str) -> list[int]:
    """Class ids of labels read against a known label set: a name must be one of ``known``
    exactly (case included); a number is an id 0..C−1 when ``ids`` (the set's files write ids)."""
    index = {n: i for i, n in enumerate(known)}
    names = ", ".join(known)
    out = []
    for v, p in zip(raw, pos):
        if isinstance(v, int):
            if not ids:
                raise AdvvizError(f"{source}: {p}: label {v} is a number, but {whose} labels are names ({names}); "
                                  f"write the name")
            if not 0 <= v < len(known):
                raise AdvvizError(f"{source}: {p}: label {v} is out of range for the {len(known)} classes "
                                  f"0..{len(known) - 1} ({names})")
            out.append(v)
        elif v in index:
            out.append(index[v])
        else:
            folded = [n for n in known if n.casefold() == v.casefold()]
            hint = f"; labels are matched exactly, case included (did you mean {folded[0]!r}?)" if folded else ""
            raise AdvvizError(f"{source}: {p}: label {v!r} is not one of {whose} labels ({names}){hint}")
    return out


def rows_to_dataset(rows, text_col, label_col, name, split, source,
                    label_names=None, lines=None, label_map=None, ids: bool = True,
                    whose: str | None = None) -> TextDataset:
    """Turn raw rows into a TextDataset: strip texts, skip empty ones, make labels class ids.

    Labels are validated here, as the data is read, every one naming the file and line (``lines``:
    the file line of each row) in one line: a row with a text needs a label (:func:`parse_label`);
    ``label_map`` (:func:`parse_label_map`) is applied first; a column mixing names and numbers is
    refused. Then:

    - with ``label_names`` (a named data set, or the training set an ``--augment`` file adds to:
      ``whose`` says which in messages), a name must be one of them exactly and a number is its id
      0..C−1 (refused when ``ids`` is False: the set's own files write names, so a number would
      be a guess at an internal order);
    - else (a local file) integer labels must be 0..C−1 with every class present ({1, 5} or one
      stray 100000 are refused, never turned into 6 or 100,001 classes) and names are mapped to
      ids in sorted order, recorded as ``label_mapping`` (names differing only in case are refused).
    """
    texts, raw, pos, skipped = [], [], [], 0
    parsed: dict = {}  # (type, value) -> label: a column repeats a few values
    for i, r in enumerate(rows):
        t = r.get(text_col)
        t = "" if t is None else str(t).strip()
        if not t:
            skipped += 1
            continue
        p = f"line {lines[i]}" if lines is not None else f"row {i + 1}"
        v = r.get(label_col)
        key = (type(v), v) if isinstance(v, (str, int, float)) else None
        label = parsed.get(key) if key is not None else None
        if label is None:
            label = parse_label(v, f"{source}: {p}")  # raises at the first bad occurrence
            if key is not None:
                parsed[key] = label
        texts.append(t)
        raw.append(label_map.get(label, label) if label_map else label)
        pos.append(p)
    _refuse_mixed(raw, pos, source, bool(label_map))
    named = bool(raw) and isinstance(raw[0], str)
    label_mapping = None
    if label_names is not None:
        label_names = list(label_names)
        labels = _to_known(raw, pos, source, label_names, ids, whose or f"{name}'s")
        if named:
            label_mapping = {n: i for i, n in enumerate(label_names)}
    elif named:
        _refuse_twins(raw, pos, source)
        label_mapping = {k: i for i, k in enumerate(sorted(set(raw)))}
        labels = [label_mapping[v] for v in raw]
        label_names = list(label_mapping)
    else:
        labels = raw
        found = sorted(set(labels))
        if found and found != list(range(len(found))):
            raise AdvvizError(f"{source}: integer labels must be 0..C−1 with every class present, found "
                              f"{_shown(found)}; renumber them 0..{len(found) - 1} (or write the labels as "
                              f"names, e.g. neg/pos, which are mapped to ids in sorted order; or --label-map)")
        label_names = [str(i) for i in range(len(found))]
    return TextDataset(name, split, texts, labels, list(label_names), str(source),
                       skipped_empty=skipped, label_mapping=label_mapping)


MIN_ROWS_FOR_CLASS_CHECK = 20  # below this a file is a toy: any number of classes is believable


def check_classes(ds: "TextDataset", source, label_col: str | None = None) -> None:
    """A data set to learn from needs at least two classes, and not (nearly) a class per row: a
    label column of ids (``--label-col source_index``) or texts is a valid-looking set of
    0..N−1 or N names, and would silently train an N-class model of nothing. Fewer than two
    examples a class on average, in a file of at least MIN_ROWS_FOR_CLASS_CHECK rows, is refused."""
    present = sorted(set(ds.labels))
    if len(present) < 2:
        only = f" ({ds.label_names[present[0]]})" if present else ""
        raise AdvvizError(f"{source}: only one class{only} in the labels; a classifier needs at least two")
    if len(ds) >= MIN_ROWS_FOR_CLASS_CHECK and 2 * len(present) > len(ds):
        col = f"'{label_col}'" if label_col else "the label column"
        raise AdvvizError(f"{source}: {len(present):,} classes for {len(ds):,} examples (fewer than two a class): "
                          f"is {col} really the labels? name the label column with --label-col")


def ids_mean_classes(name: str | None, label_mapping: dict | None) -> bool:
    """Whether the class ids 0..C−1 of a label set mean something to its user: its files write ids
    (a named set such as sst2-sent, or a file of integer labels) — not a file of names, whose ids
    are only the sorted order of the names (so a file of integers is not read by position
    against it: ``read_augment``, ``align_labels``)."""
    return not label_mapping or name in REGISTRY


def align_labels(ds: "TextDataset", label_names, model_name: str, dataset: str,
                 ids: bool = True) -> "TextDataset":
    """``ds`` with its label ids in the order of a model's ``label_names``. Labels with names are
    matched by name (ids reordered when only the order differs); a file of integer labels
    ``0..C−1`` carries no names and is taken by position, so its labels must be below the model's
    number of classes — and the model's ids must mean something (``ids``,
    :func:`ids_mean_classes`). Anything else is one line, as ``compare`` / ``project`` / ``report``
    do: evaluating on another label set would be another task (accuracy 0.0, or a traceback)."""
    model_names, names = list(label_names), list(ds.label_names)
    if names == model_names:
        return ds
    used = sorted(set(ds.labels))
    positional = ds.label_mapping is None and names == [str(i) for i in range(len(names))]
    if positional and not ids:
        raise AdvvizError(f"{model_name} was trained on the label names {model_names}, whose ids are only their "
                          f"sorted order, but {dataset} has integer labels; write its labels as those names")
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


def _load_named_local(spec: DatasetSpec, d: Path, label_map=None) -> dict[str, TextDataset]:
    """Every split read against the set's own label names (ids 0..C−1 or the names themselves), so
    dev and test mean what train means whatever each file holds."""
    out = {}
    for split in ("train", "dev", "test"):
        if split not in spec.files:
            continue
        path = d / spec.files[split]
        cols, rows, lines = read_rows(path)
        text_col = _pick(cols, spec.text_col, (), "text", path)
        label_col = _pick(cols, spec.label_col, (), "label", path)
        out[split] = rows_to_dataset(rows, text_col, label_col, spec.name, split, path,
                                     label_names=spec.label_names, lines=lines, label_map=label_map)
    return derive_splits(out, spec.derive)


def hub_available() -> bool:
    """Whether the Hugging Face fallback can run (the optional ``datasets`` package is installed)."""
    return importlib.util.find_spec("datasets") is not None


def _load_from_hub(spec: DatasetSpec, label_map=None) -> dict[str, TextDataset]:
    try:
        import datasets  # optional: pip install advviz[hub]
    except ImportError:
        looked = ", ".join(str(p) for _, p in data_dir_search())
        raise AdvvizError(f"data set '{spec.name}' is in no data directory (looked in {looked}) and the Hugging "
                          f"Face fallback needs the datasets package: pip install 'advviz[hub]' (or pass "
                          f"--data-dir DIR, or give a .csv/.tsv/.jsonl file as --dataset)") from None
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
                                         label_names=spec.label_names, label_map=label_map)
    return derive_splits(out, spec.derive)


_CACHE: dict[tuple, dict[str, TextDataset]] = {}


def load_splits(name: str, data_dir=None, text_col: str | None = None,
                label_col: str | None = None, label_map=None) -> dict[str, TextDataset]:
    """All splits of a named data set or a local file, with derived splits filled in; ``label_map``
    (``--label-map``: text, a JSON file or a parsed mapping, :func:`parse_label_map`) says what the
    labels mean."""
    path = Path(name).expanduser()
    label_map = parse_label_map(label_map)
    key = (name, str(data_dir), text_col, label_col, json.dumps(label_map_record(label_map), sort_keys=True))
    if key in _CACHE:
        return _CACHE[key]
    if name in REGISTRY:
        spec = REGISTRY[name]
        d = Path(data_dir).expanduser() if data_dir else default_data_dir()
        if d.is_dir() and all((d / f).is_file() for f in spec.files.values()):
            out = _load_named_local(spec, d, label_map)
        elif data_dir and not d.is_dir():
            _resolve_dir(data_dir)  # raises with the how-to message
            raise AssertionError  # unreachable
        else:
            out = _load_from_hub(spec, label_map)
    elif os.path.lexists(path) and (path.is_file() or not path.is_dir()):
        cols, rows, lines = read_rows(path)
        if not rows:
            raise AdvvizError(f"{path}: the file has a header but no rows")
        tc = _pick(cols, text_col, TEXT_COLUMNS, "text", path)
        lc = _pick(cols, label_col, LABEL_COLUMNS, "label", path)
        ds = rows_to_dataset(rows, tc, lc, str(path), "train", path, lines=lines, label_map=label_map)
        if len(ds) == 0:
            raise AdvvizError(f"{path}: every text is empty")
        check_classes(ds, path, lc)
        out = derive_splits({"train": ds})  # dev and test are rows of this file: one mapping
    else:
        looks_like_path = any(ch in name for ch in "/\\.")
        if looks_like_path:
            raise AdvvizError(f"no such file: {name}")
        raise AdvvizError(f"unknown data set '{name}'; known: {', '.join(REGISTRY)} "
                          f"(or a path to a .csv/.tsv/.jsonl file)")
    _CACHE[key] = out
    return out


def dataset_files(name: str, data_dir=None) -> list[Path]:
    """The local files :func:`load_splits` reads for ``name`` (every split's file of a named set
    found in the data directory, or the file itself), e.g. so no command writes an output over
    them; [] when nothing local would be read (the hub copy, an unknown name)."""
    if name in REGISTRY:
        d = Path(data_dir).expanduser() if data_dir else default_data_dir()
        files = [d / f for f in REGISTRY[name].files.values()]
        return files if d.is_dir() and all(f.is_file() for f in files) else []
    path = Path(name).expanduser()
    return [path] if os.path.lexists(path) else []


def load_dataset(name: str, split: str = "train", data_dir=None, text_col=None,
                 label_col=None, label_map=None) -> TextDataset:
    """One split of a named data set or a local file."""
    splits = load_splits(name, data_dir, text_col, label_col, label_map)
    if split not in splits:
        raise AdvvizError(f"data set '{name}' has no split '{split}'; it has: {', '.join(splits)}")
    return splits[split]


def training_reading(config: dict, name: str) -> dict:
    """How a checkpoint's training data was read (``text_col``, ``label_col``, ``label_map``), as
    keyword arguments of :func:`load_splits` for reading ``name`` again: another read of the same
    data set must take the same label column and give its labels the same meaning (an ``eval``
    that auto-detected another column would score another task). ``{}`` for any other data set."""
    train, data = config.get("train") or {}, config.get("data") or {}
    trained = train.get("dataset") or data.get("name")
    if not trained or not _same_data(name, trained):
        return {}
    return {"text_col": train.get("text_col"), "label_col": train.get("label_col"),
            "label_map": data.get("label_map")}


def _same_data(a: str, b: str) -> bool:
    """One named set, or one file however its path is written (``d.tsv``, ``./d.tsv``)."""
    if a == b or a in REGISTRY or b in REGISTRY:
        return a == b
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


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
