"""JSON in and out, the one way advviz does it.

    dumps(obj)                 strict JSON: a NaN / ±Infinity anywhere becomes null (never the
                               invalid tokens ``NaN`` / ``Infinity`` that ``json.dumps`` writes)
    read_json(path)            a JSON file that is a regular file (no symlink, FIFO or device),
                               at most ``max_bytes`` long and at most ``max_depth`` levels deep;
                               anything else is one :class:`AdvvizError` line naming the file

Every JSON document advviz prints or writes (``--json`` output, metrics.json, eval.json, resume
state, reports) goes through :func:`dumps`; every JSON file it reads from a checkpoint, a language
model, a resume state or the models root goes through :func:`read_json`.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from ..errors import AdvvizError

MAX_JSON_BYTES = 64 << 20  # a config/metrics/state file; a resume state's log is the largest (MBs)
MAX_DEPTH = 64  # advviz writes at most ~6 levels (HF encoder configs included)


def finite(obj: Any) -> Any:
    """A copy of ``obj`` with every non-finite float (NaN, ±inf, numpy's too) replaced by None."""
    if isinstance(obj, float) or type(obj).__name__ in ("float32", "float64", "float16"):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj: Any, **kw) -> str:
    """``json.dumps`` that always produces valid JSON: non-finite numbers become null."""
    kw.setdefault("default", str)
    return json.dumps(finite(obj), allow_nan=False, **kw)


def depth(obj: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of a parsed JSON value (iterative; stops counting past ``limit``)."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, (dict, list)):
            deepest = max(deepest, d)
            if d > limit:
                return d
            stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))
    return deepest


def read_regular(path: str | os.PathLike, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of ``path`` if it is a regular file (not a symlink, FIFO, socket or device) of at
    most ``max_bytes``; opened without following a symlink and without blocking on a FIFO."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise AdvvizError(f"{path}: no such {what}") from None
    except OSError as e:
        raise AdvvizError(f"{path}: cannot read ({e.strerror or e})") from None
    if stat.S_ISLNK(st.st_mode):
        raise AdvvizError(f"{path}: is a symbolic link (advviz reads only regular files here)")
    if not stat.S_ISREG(st.st_mode):
        raise AdvvizError(f"{path}: is not a regular file")
    if st.st_size > max_bytes:
        raise AdvvizError(f"{path}: {st.st_size:,} bytes, more than the {max_bytes:,} allowed for a {what}")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise AdvvizError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped between lstat and open
            raise AdvvizError(f"{path}: is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise AdvvizError(f"{path}: cannot read ({e.strerror or e})") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise AdvvizError(f"{path}: more than the {max_bytes:,} bytes allowed for a {what}")
    return data


def loads(text: str | bytes, where: str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON text; a syntax error or nesting deeper than ``max_depth`` is one line naming ``where``."""
    try:
        obj = json.loads(text)
    except RecursionError:
        raise AdvvizError(f"{where}: JSON nested more than {max_depth} levels deep") from None
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise AdvvizError(f"{where}: not a readable JSON file ({type(e).__name__})") from None
    if depth(obj, max_depth) > max_depth:
        raise AdvvizError(f"{where}: JSON nested more than {max_depth} levels deep")
    return obj


def read_json(path: str | os.PathLike, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_DEPTH,
              expect: type | None = None) -> Any:
    """A JSON file read safely (see the module doc); ``expect=dict`` also requires an object."""
    obj = loads(read_regular(path, max_bytes, "JSON file"), str(path), max_depth)
    if expect is dict and not isinstance(obj, dict):
        raise AdvvizError(f"{path}: not a JSON object (found a {type(obj).__name__})")
    return obj
