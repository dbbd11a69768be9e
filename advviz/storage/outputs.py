"""Output files of the commands (``reconstruct --out``, ``project --out``, ``report --out``,
``eval --per-example``): checked before any work is done, written whole.

    check_output_file(path, "--out")                 # one line unless a regular file may go there
    write_output(path, lambda tmp: df.to_csv(tmp), "--out")   # temp file beside it + rename

The path must be a regular file or not exist (a directory, a symbolic link, a FIFO or a device is
refused, and so is a parent that is not a directory); the file is written to a hidden temporary
sibling and renamed into place, so a failure leaves the previous file (or nothing) and no
temporary behind. An existing regular file at the path is what the user named as the output and
is replaced, as every command line tool does with its output file. A file written *beside* it
(``check_companion_file``) was not named by the user and is replaced only if advviz wrote it.
"""

from __future__ import annotations

import json
import os
import stat
import uuid
from pathlib import Path
from typing import Callable

from ..errors import AdvvizError


def check_output_file(path: str | os.PathLike, flag: str = "--out") -> Path:
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise AdvvizError(f"{flag} {path}: {e.strerror or e}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise AdvvizError(f"{flag} {path} is a directory; give a file name (e.g. {path / 'out'}{path.suffix or ''})")
        if stat.S_ISLNK(st.st_mode):
            raise AdvvizError(f"{flag} {path} is a symbolic link; give the path of a regular file")
        if not stat.S_ISREG(st.st_mode):
            raise AdvvizError(f"{flag} {path} is not a regular file")
    parent = path.parent
    for p in [parent, *parent.parents]:
        if os.path.lexists(p):
            if not p.is_dir():
                raise AdvvizError(f"{flag} {path}: {p} is not a directory")
            break
    return path


def check_companion_file(path: str | os.PathLike, flag: str, ours: Callable[[dict], bool]) -> Path:
    """A JSON file a command writes *beside* the output the user named (``report.json`` beside
    ``report.md``, ``T.metrics.json`` beside a ``project`` table): the user never named it, so an
    existing one is replaced only when it is recognisably this command's own output (``ours`` of
    its parsed JSON object). Anything else there is the user's and is refused with one line."""
    path = check_output_file(path, flag)
    if os.path.lexists(path):
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
            mine = isinstance(obj, dict) and bool(ours(obj))
        except (OSError, ValueError):
            mine = False
        if not mine:
            raise AdvvizError(f"{flag} {path} exists and is not a file this command wrote; advviz would replace "
                              f"it: move it away or choose another --out")
    return path


def replace_atomically(path: str | os.PathLike, write: Callable[[Path], object],
                       before_replace: Callable[[], object] | None = None) -> Path:
    """``write(tmp)`` fills a hidden temporary sibling of ``path`` (``.NAME.tmp-<hex>``, the form
    ``outdir.TEMP_RE`` recognises as advviz's), which then replaces ``path`` by a rename, after
    ``before_replace()`` if given. The temporary is removed whatever happens (it is this call's own
    file: a fresh random name); errors (OSError included) propagate."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        write(tmp)
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return path


def write_output(path: str | os.PathLike, write: Callable[[Path], object], flag: str = "--out") -> Path:
    """``write(tmp)`` fills a temporary sibling of ``path``, which then replaces ``path``."""
    path = check_output_file(path, flag)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return replace_atomically(path, write, lambda: check_output_file(path, flag))
    except OSError as e:
        raise AdvvizError(f"cannot write {flag} {path}: {e.strerror or e}") from None
