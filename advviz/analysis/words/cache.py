"""The atlas's disk cache: one safetensors file per (checkpoint hash, settings, texts), checked again on read."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ...storage.jsonio import dumps
from ...storage.outdir import replace_atomically
from .records import CACHE_VERSION, TokenRecords


# --------------------------------------------------------------------------------------------
# disk cache


def _hash(directory) -> str:
    from ..projection import checkpoint_hash  # deferred: `advviz --help` must not load it

    return checkpoint_hash(directory)


def cache_key(directory, texts: list[str], labels: list[int], params: dict) -> str:
    """SHA-256 (32 hex digits) of the checkpoint's weights + config, the settings, texts and labels."""
    h = hashlib.sha256()
    h.update(_hash(directory).encode())
    h.update(json.dumps({"v": CACHE_VERSION, **params}, sort_keys=True, default=str).encode())
    for t in texts:
        h.update(t.encode("utf-8") + b"\x00")
    h.update(np.asarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()[:32]


def cache_dir_for(model) -> Path | None:
    """``DIR/cache`` of the checkpoint (shared by ``advviz words`` and the app) when it can be
    written; else ``$ADVVIZ_CACHE_DIR/words`` (or ``~/.cache/advviz/words``); None for a model
    without a directory."""
    directory = getattr(model, "directory", None)
    if not directory:
        return None
    d = Path(directory) / "cache"
    if os.access(d if d.is_dir() else Path(directory), os.W_OK):
        return d
    env = os.environ.get("ADVVIZ_CACHE_DIR")
    return (Path(env) if env else Path.home() / ".cache" / "advviz") / "words"


def cache_path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / f"words-{key}.safetensors"


def read_cache(cache_dir: Path, key: str, directory, vocab_size: int) -> tuple[TokenRecords, dict] | None:
    """The cached records of ``key`` if the file is a valid entry for the checkpoint as it is now
    (same key, same weights hash, consistent arrays); None means "recompute"."""
    path = cache_path(cache_dir, key)
    if not path.is_file() or path.is_symlink():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("meta", "null"))
        if not isinstance(meta, dict) or meta.get("key") != key or meta.get("version") != CACHE_VERSION:
            return None
        if meta.get("checkpoint_hash") != _hash(directory):
            return None  # the checkpoint changed since: stale
        rec = TokenRecords.from_tensors(load_file(str(path)))
        rec.check(vocab_size)
    except (SafetensorError, OSError, ValueError, TypeError, KeyError, RuntimeError):
        return None  # damaged or foreign: recomputed
    return rec, meta


def write_cache(cache_dir: Path, key: str, rec: TokenRecords, meta: dict) -> None:
    """Atomic write (hidden temporary + rename); an unwritable directory only costs the cache."""
    cache_dir = Path(cache_dir)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        replace_atomically(cache_path(cache_dir, key), lambda tmp: save_file(
            rec.tensors(), str(tmp), metadata={"meta": dumps(meta)}))  # key order kept
    except OSError:
        pass
