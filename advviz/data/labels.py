"""Labels: what a label is, and how labels become class ids (one set of rules for data sets,
their splits, ``--augment`` files and ``--label-map``)."""

from __future__ import annotations

import decimal
import json
import math
import os
import re
import unicodedata
from pathlib import Path


from ..errors import AdvvizError
from .catalog import NAMED_DATASETS
from .dataset import TextDataset
from .files import _no_duplicate_keys, _read_text


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
    return not label_mapping or name in NAMED_DATASETS


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
