"""The models root: which checkpoints exist under it, what they are, and safe access by name.

    root = registry.models_root()               # $ADVVIZ_MODELS_DIR, else <repo>/models
    rows = registry.scan(root)                  # one dict per checkpoint directory
    path = registry.resolve(root, "lstm-sst2-sent-rar-s0")   # AdvvizError unless inside root

Only the JSON files of a checkpoint are read here (never the weights), so a scan is cheap. A
name is a single directory component; anything that would leave the root (``..``, ``/``, a
symlink pointing elsewhere) is refused, so the app never opens a path a widget made up.

``eval.json`` (optional, written by :func:`record_eval`) holds what was measured after training:

    {"clean": {"dataset", "split", "accuracy", "n", ...},
     "attacks": [{"name", "epsilon", "accuracy", "n", ...}, ...],   # one per (attack, ε)
     "updated": ISO time}
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import time
from pathlib import Path
from typing import Any

from .api import load as load_model
from .errors import AdvvizError
from .evaluate import stall_note
from .methods.carl import ld_status
from .storage import jsonio, outdir
from .storage.checkpoint import write_json_atomic
from .storage.jsonio import depth, read_regular
from .storage.outdir import LM_KIND  # config.json "kind" of a language model directory (advviz.analysis.lm)

MODELS_DIR_ENV = "ADVVIZ_MODELS_DIR"
RAR_METHODS = ("rar", "carl+rar")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]{0,99}$")
MAX_DEPTH = 2  # NAME or GROUP/NAME (e.g. models/repro/lstm-sst2-sent-spgd-s0)
JOBS_DIR = ".jobs"  # background training jobs (hidden: never listed as a model)
CACHE_DIR = ".cache"  # app caches (projections, robustness results)


def models_root(value: str | os.PathLike | None = None) -> Path:
    """``value``, else ``$ADVVIZ_MODELS_DIR``, else the ``models/`` folder ``advviz train`` writes to."""
    if value:
        return Path(value).expanduser().resolve()
    env = os.environ.get(MODELS_DIR_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return outdir.DEFAULT_MODELS_DIR.resolve()


def check_name(name: str) -> str:
    """A name component is letters, digits and ``._+=-`` (not starting with ``.``)."""
    if not isinstance(name, str) or not NAME_RE.match(name) or name in (".", ".."):
        raise AdvvizError(f"'{name}' is not a valid model name (letters, digits and . _ + = - only, "
                          f"at most 100 characters, not starting with a dot)")
    return name


def resolve(root: str | os.PathLike, name: str) -> Path:
    """The directory of model ``name`` (``NAME`` or ``GROUP/NAME``) under ``root``; refuses anything
    that would leave the root (``..``, absolute paths, symlinks)."""
    parts = name.split("/") if isinstance(name, str) else [name]
    if not 1 <= len(parts) <= MAX_DEPTH:
        raise AdvvizError(f"'{name}' is not a valid model name (NAME or GROUP/NAME)")
    for part in parts:
        check_name(part)
    root = Path(root).resolve()
    path = root.joinpath(*parts)
    if path.resolve() != path:  # a symlink on the way points elsewhere
        raise AdvvizError(f"'{name}' is not inside the models root {root}")
    return path


MAX_JSON_BYTES = 4 << 20  # config / metrics / eval of one checkpoint (they are KBs)
MAX_LOG_BYTES = 64 << 20  # train_log.jsonl
SCAN_SECONDS = 10.0  # a scan stops reading after this; the rest is listed as not read


def is_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def _load_json(path: Path, max_bytes: int = MAX_JSON_BYTES) -> tuple[Any, str | None]:
    """(value, None), (None, None) when the file does not exist, or (None, reason) when it cannot
    be used: only a regular file inside the checkpoint is read (no symlink, FIFO or device), at
    most ``max_bytes`` and nested at most :data:`advviz.storage.jsonio.MAX_DEPTH` deep."""
    if not os.path.lexists(path):
        return None, None
    try:
        return jsonio.read_json(path, max_bytes), None  # (the module's own read_json reads a checkpoint's file)
    except AdvvizError as e:
        return None, f"{path.name}: {str(e).split(': ', 1)[-1]}"


def _read_json(path: Path) -> Any:
    return _load_json(path)[0]


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def robustness_summary(ev: dict | None) -> str:
    """``"spgd ε=1: 0.612; pgd ε=0.5: 0.55"`` from an eval.json (empty when nothing was attacked)."""
    if not isinstance(ev, dict):
        return ""
    parts = []
    attacks = ev.get("attacks")
    for r in attacks if isinstance(attacks, list) else []:
        if isinstance(r, dict) and _num(r.get("accuracy")) is not None:
            eps = _num(r.get("epsilon"))
            eps_s = f" ε={eps:g}" if eps is not None else ""
            parts.append(f"{str(r.get('name', '?'))[:40]}{eps_s}: {_num(r['accuracy']):.3f}")
    return "; ".join(parts)


def _unreadable(row: dict, reason: str) -> dict:
    row["status"] = f"unreadable: {reason}"
    return row


def _row(path: Path) -> dict:
    """A registry row with every column and nothing known yet."""
    return {"name": path.name, "path": str(path), "status": "ok", "arch": None, "method": None, "epsilon": None,
            "dataset": None, "training_data": "", "dev_accuracy": None, "ld_steps": None, "note": "", "robustness": "",
            "clean_accuracy": None, "parameters": None, "train_seconds": None, "date": None, "source": None}


def describe(path: Path) -> dict:
    """One registry row from a checkpoint's JSON files. ``status`` is ``ok``, ``language model``,
    ``missing weights`` or ``unreadable: REASON`` (a file that is not a regular JSON object of
    sane size and depth); a bad checkpoint never stops a scan."""
    row = _row(path)
    loaded = {}
    for f in ("config.json", "metrics.json", "eval.json"):
        value, problem = _load_json(path / f)
        if problem is None and value is not None and not isinstance(value, dict):
            problem = f"{f}: not a JSON object"
        if problem is not None:
            return _unreadable(row, problem)
        loaded[f] = value
    cfg, metrics, ev = loaded["config.json"], loaded["metrics.json"] or {}, loaded["eval.json"]
    if cfg is None:
        return _unreadable(row, "config.json is missing")
    try:
        st = os.lstat(path / "model.safetensors")
        if not stat.S_ISREG(st.st_mode):
            return _unreadable(row, "model.safetensors is not a regular file")
        row["date"] = time.strftime("%Y-%m-%d %H:%M", time.localtime(st.st_mtime))
    except OSError:
        row["status"] = "missing weights"

    def text(section: str, key: str):
        v = cfg.get(section)
        v = v.get(key) if isinstance(v, dict) else None
        return v if isinstance(v, str) else None

    row["robustness"] = robustness_summary(ev)
    if cfg.get("kind") == LM_KIND:  # a language model (perplexity), not a classifier
        row.update(status="language model" if row["status"] == "ok" else row["status"], method="lm",
                   dataset=text("data", "name"), parameters=_num(metrics.get("parameters")),
                   train_seconds=_num(metrics.get("train_seconds")))
        return row
    row["arch"] = text("model", "arch") or text("train", "arch")
    row["method"] = text("method", "name")
    row["source"] = text("model", "source")  # the folder or hub id an imported model came from (advviz import)
    row["epsilon"] = _num((cfg.get("method") or {}).get("epsilon")) if isinstance(cfg.get("method"), dict) else None
    row["dataset"] = text("data", "name")
    row["training_data"] = training_data(cfg.get("data"))
    row["dev_accuracy"] = _num(metrics.get("dev_accuracy"))
    try:
        ld = ld_status(cfg.get("method") if isinstance(cfg.get("method"), dict) else None, metrics)
    except (AttributeError, TypeError, ValueError):  # values of the wrong type in a hand-edited file
        ld = {"ld_steps": None, "note": "L_D steps unknown"}
    row["ld_steps"], row["note"] = (ld["ld_steps"], ld["note"]) if ld else (None, "")
    row["note"] = "; ".join(n for n in (stall_note(metrics), row["note"]) if n)
    row["parameters"] = _num(metrics.get("parameters"))
    row["train_seconds"] = _num(metrics.get("total_train_seconds", metrics.get("train_seconds")))
    if isinstance(ev, dict) and isinstance(ev.get("clean"), dict):
        row["clean_accuracy"] = _num(ev["clean"].get("accuracy"))
    return row


def training_data(data) -> str:
    """What a run trained on beyond its data set's labelled train split, in a few words: the labelled
    share and the unlabeled texts of a semi-supervised run, the rows of ``--augment`` files
    ("10% labels + 6,228 unlabeled", "+6,920 augmented"); "" for a plain run."""
    if not isinstance(data, dict):
        return ""
    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    split = data.get("split_info") if isinstance(data.get("split_info"), dict) else {}
    frac, unlabeled, augmented = split.get("labeled_fraction"), data.get("unlabeled_examples"), split.get("augmented_rows")
    extra = [f"{n:,} {what}" for n, what in ((unlabeled, "unlabeled"), (augmented, "augmented"))
             if number(n) and isinstance(n, int) and n > 0]
    if number(frac) and 0 < frac < 1:  # a share of the labels, and what was added to it
        return " + ".join([f"{frac:.0%} labels", *extra])
    return "+" + " + ".join(extra) if extra else ""  # all the labels, plus what was added


def label(row: dict) -> str:
    """A model's name as pickers show it: with its note when it is not what its method says
    (a CARL checkpoint whose L_D never trained is FreeLB, and must not pass as CARL)."""
    return f"{row['name']} ({row['note']})" if row.get("note") else row["name"]


def _children(d: Path) -> list[Path]:
    """Visible, well-named, real (not symlinked) sub-directories."""
    out = []
    for p in sorted(d.iterdir()):
        if not p.name.startswith(".") and NAME_RE.match(p.name) and p.is_dir() and not p.is_symlink():
            out.append(p)
    return out


def _has_config(p: Path) -> bool:
    return os.path.lexists(p / "config.json")


def scan(root: str | os.PathLike | None = None, time_budget: float = SCAN_SECONDS) -> list[dict]:
    """Every checkpoint under ``root`` (directly, or one group folder deep), sorted by name; a row's
    ``name`` is its path relative to the root. Hidden, temporary and symlinked dirs are skipped.
    Only regular files inside the root are read, each bounded in size; once ``time_budget``
    seconds have passed, the remaining checkpoints are listed as not read."""
    root = models_root(root)
    if not root.is_dir():
        return []
    rows = []
    deadline = time.monotonic() + time_budget

    def row(p: Path, name: str) -> dict:
        if time.monotonic() > deadline:
            return {**_unreadable(_row(p), f"not read (the scan took more than {time_budget:g} s)"), "name": name}
        return {**describe(p), "name": name}

    try:
        for p in _children(root):
            if _has_config(p):
                rows.append(row(p, p.name))
                continue
            for q in _children(p):
                if _has_config(q):
                    rows.append(row(q, f"{p.name}/{q.name}"))
    except OSError:
        pass  # a folder removed while scanning: the next run sees the new state
    return sorted(rows, key=lambda r: r["name"])


def is_rar(row: dict) -> bool:
    return row.get("method") in RAR_METHODS


def rar_models(rows: list[dict]) -> list[dict]:
    """The checkpoints trained with a reconstruction head (RAR, CARL+RAR)."""
    return [r for r in rows if is_rar(r) and r.get("status") == "ok"]


def language_models(rows: list[dict]) -> list[dict]:
    """Language-model directories of the root (``advviz lm train --out ROOT/NAME``)."""
    return [r for r in rows if r.get("status") == "language model"]


def fingerprint(path: Path) -> float:
    """Changes whenever the weights are rewritten (cache key next to the path)."""
    try:
        return (path / "model.safetensors").stat().st_mtime
    except OSError:
        raise AdvvizError(f"model '{path.name}' is gone: its files were deleted or moved") from None


def load(root: str | os.PathLike, name: str, device: str = "cpu"):
    """:func:`advviz.load` for a model of this root, by name only."""
    path = resolve(root, name)
    if not is_checkpoint(path):
        raise AdvvizError(f"model '{name}' is gone or incomplete (no config.json / model.safetensors)")
    return load_model(path, device)


def delete(root: str | os.PathLike, name: str) -> None:
    """Remove one checkpoint directory of the root (only a directory that is a checkpoint)."""
    path = resolve(root, name)
    kind, reason = outdir.ownership(path)
    if kind not in (outdir.CHECKPOINT, outdir.LM):
        raise AdvvizError(f"'{name}' is not deleted: it {reason or 'is not a checkpoint'} (advviz only deletes "
                          f"a checkpoint or language model it wrote, with nothing else in it)")
    shutil.rmtree(path)


def record_eval(path: str | os.PathLike, clean: dict | None = None, attacks: list[dict] | None = None) -> dict:
    """Merge results into ``eval.json`` (attacks replace earlier rows with the same name and ε)."""
    path = Path(path)
    ev = _read_json(path / "eval.json")
    ev = ev if isinstance(ev, dict) else {}
    if clean is not None:
        ev["clean"] = clean
    if attacks:
        keep = {(r.get("name"), r.get("epsilon")): r for r in ev.get("attacks") or [] if isinstance(r, dict)}
        for r in attacks:
            keep[(r.get("name"), r.get("epsilon"))] = {k: v for k, v in r.items() if k != "per_example"}
        ev["attacks"] = sorted(keep.values(), key=lambda r: (str(r.get("name")), r.get("epsilon") or 0))
    ev["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_json_atomic(path / "eval.json", ev)
    return ev


def train_log(root: str | os.PathLike, name: str) -> list[dict]:
    """The logged steps and evaluations of model ``name`` (``train_log.jsonl``; bad lines skipped)."""
    path = resolve(root, name) / "train_log.jsonl"
    out = []
    try:
        lines = read_regular(path, MAX_LOG_BYTES, "training log").decode("utf-8").splitlines()
    except (AdvvizError, UnicodeDecodeError):
        return []
    for line in lines:
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(obj, dict) and depth(obj) <= 4:
            out.append(obj)
    return out


def read_json(root: str | os.PathLike, name: str, file: str) -> dict | None:
    """config.json / metrics.json / eval.json of model ``name`` (None when missing or unreadable)."""
    if file not in ("config.json", "metrics.json", "eval.json"):
        raise AdvvizError(f"{file} is not a checkpoint JSON file")
    obj = _read_json(resolve(root, name) / file)
    return obj if isinstance(obj, dict) else None


def cache_dir(root: str | os.PathLike, kind: str) -> Path:
    """``ROOT/.cache/KIND`` (created) for on-disk caches of the app."""
    d = models_root(root) / CACHE_DIR / check_name(kind)
    d.mkdir(parents=True, exist_ok=True)
    return d
