"""Named data sets: where they are looked for (the data directory, then the Hugging Face hub),
loading their splits (cached per process) and listing them."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path


from ..errors import AdvvizError
from .catalog import NAMED_DATASETS, DatasetSpec
from .dataset import TextDataset
from .files import LABEL_COLUMNS, TEXT_COLUMNS, _pick, read_rows
from .labels import check_classes, label_map_record, parse_label_map, rows_to_dataset
from .splits import derive_splits

DATA_DIR_ENV = "ADVVIZ_DATA_DIR"


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
    checkout = Path(__file__).resolve().parent.parent.parent
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
    if name in NAMED_DATASETS:
        spec = NAMED_DATASETS[name]
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
        raise AdvvizError(f"unknown data set '{name}'; known: {', '.join(NAMED_DATASETS)} "
                          f"(or a path to a .csv/.tsv/.jsonl file)")
    _CACHE[key] = out
    return out


def dataset_files(name: str, data_dir=None) -> list[Path]:
    """The local files :func:`load_splits` reads for ``name`` (every split's file of a named set
    found in the data directory, or the file itself), e.g. so no command writes an output over
    them; [] when nothing local would be read (the hub copy, an unknown name)."""
    if name in NAMED_DATASETS:
        d = Path(data_dir).expanduser() if data_dir else default_data_dir()
        files = [d / f for f in NAMED_DATASETS[name].files.values()]
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
    if a == b or a in NAMED_DATASETS or b in NAMED_DATASETS:
        return a == b
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def list_datasets(data_dir=None) -> list[dict]:
    """One row per known name: where it is found, split sizes and label names."""
    d = Path(data_dir).expanduser() if data_dir else default_data_dir()
    rows = []
    for spec in NAMED_DATASETS.values():
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
