"""Output files of the commands (``eval --per-example / --adversarial-csv``, ``augment --out``,
``report --out``, ``words --out``, ``reconstruct --out``, ``project --out``): checked before any
work is done, written whole, and never over a file advviz did not write.

    guard = Outputs(args.overwrite, checkpoints=[args.checkpoint], data=[(args.dataset, args.data_dir)])
    guard.file(args.out, "--out")                        # one line unless the file may go there
    guard.file(companion, "--out (JSON)", beside=args.out)   # a file the user did not name
    guard.inputs(data=[(name, args.data_dir)])           # checked again as more inputs become known
    write_output(args.out, lambda tmp: df.to_csv(tmp), "--out", overwrite=args.overwrite)

The rule, for every output path:

1. It must be a regular file or not exist: a directory, a symbolic link, a FIFO or a device is
   refused, and so is a parent that is not a directory.
2. It must not be an input of the same command: a data file, a file of an input checkpoint or
   language model (or anything inside one, its ``cache/`` included), compared by resolved path
   (``os.path.realpath``: ``..``, symlinked folders) and by device + inode (hard links). It must not
   lie inside any advviz checkpoint, language model, resume state or job folder either (those hold
   only the files advviz writes there: :func:`advviz.storage.outdir.enclosing_advviz_dir`), nor be
   the lock of an advviz run. ``--overwrite`` changes none of this.
3. An existing file there is replaced only when advviz wrote it, or with ``--overwrite``. A file
   written *beside* the named one (``report.json`` beside ``report.md``, ``T.metrics.json`` beside
   a ``project`` table) was never named by the user: ``--overwrite`` does not cover it.
4. Two outputs of one command are never the same file.

How advviz recognises its own output files: each directory it writes an output into holds
``.advviz-outputs.json``, mapping each output's name to the size and SHA-256 of the bytes advviz
wrote there. A file is advviz's when its current size and hash match its record, so a file the user
edited or replaced afterwards is the user's again (a file holding exactly advviz's bytes has nothing
of the user's to lose). Why this and not another marker: a marker inside the file would break the
CSV/TSV/JSONL/parquet that other tools read; extended attributes are missing on some file systems
and dropped silently by others; an mtime or inode record is fooled by tools that keep mtimes and
by reused inodes. A record that is lost or unreadable only makes advviz ask for ``--overwrite`` —
it never makes a user's file look like advviz's. A file of that name that is not advviz's record
(or is a symlink) is left alone, and nothing is recorded in that folder. Updates of the record
are serialised by ``flock`` on the folder.

Writing: the file goes to a hidden temporary sibling (:func:`advviz.storage.outdir.replace_atomically`),
is hashed, and renamed into place after rules 1 and 3 are checked again (a file that appeared
meanwhile is the user's: refused and kept), so a failure leaves the previous file (or nothing) and
no temporary behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..data import dataset_files
from ..errors import AdvvizError
from . import outdir
from .jsonio import dumps, read_json

RECORD_NAME = ".advviz-outputs.json"
RECORD_KEY = "advviz_outputs"  # the key that makes a JSON object advviz's record
MAX_RECORD_BYTES = 8 << 20
OVERWRITE_HELP = ("replace an existing file at the output path(s) that advviz did not write (a file advviz wrote "
                  "there, unchanged since, is replaced without it); never an input of this command, nor a file "
                  "written beside the one you named")


# --------------------------------------------------------------------------------------------
# which files are advviz's


def _digest(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def _read_record(d: Path) -> dict | None:
    """The ``files`` mapping of advviz's record in ``d`` ({} when there is none), or None when the
    file of that name is not advviz's record (then it is never written over)."""
    p = d / RECORD_NAME
    if not os.path.lexists(p):
        return {}
    try:
        rec = read_json(p, MAX_RECORD_BYTES)
    except AdvvizError:
        return None
    if not isinstance(rec, dict) or rec.get(RECORD_KEY) != 1 or not isinstance(rec.get("files"), dict):
        return None
    return rec["files"]


def is_advviz_output(path: str | os.PathLike) -> bool:
    """Whether the regular file ``path`` holds exactly the bytes advviz last wrote there."""
    path = Path(path)
    try:
        st = os.lstat(path)
        files = _read_record(path.parent)
    except OSError:
        return False
    entry = (files or {}).get(path.name)
    if not stat.S_ISREG(st.st_mode) or not isinstance(entry, dict) or entry.get("size") != st.st_size:
        return False
    try:
        return _digest(path) == (entry.get("size"), entry.get("sha256"))
    except OSError:
        return False


@contextlib.contextmanager
def _dir_locked(d: Path) -> Iterator[None]:
    """``flock`` on the directory itself (no extra file): two advviz processes writing outputs
    into one folder do not lose each other's records. Where flock is unavailable, unlocked."""
    try:
        # POSIX only: where fcntl is missing, outputs are written unlocked
        import fcntl

        fd = os.open(d, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # releases the flock


def _record(path: Path, size: int, sha256: str) -> None:
    """Note in ``path``'s folder that advviz wrote these bytes there; entries of files that are gone
    or changed size are dropped. Best effort: without a record the file only needs ``--overwrite``."""
    d = path.parent
    try:
        with _dir_locked(d):
            files = _read_record(d)
            if files is None:
                return
            kept = {}
            for name, e in files.items():
                try:
                    st = os.lstat(d / name)
                except OSError:
                    continue
                if isinstance(e, dict) and stat.S_ISREG(st.st_mode) and e.get("size") == st.st_size:
                    kept[name] = e
            kept[path.name] = {"size": size, "sha256": sha256}
            rec = {RECORD_KEY: 1, "about": "files advviz wrote in this folder (name: size, SHA-256); advviz "
                                          "replaces a file here without --overwrite only while it matches",
                   "files": dict(sorted(kept.items()))}
            outdir.replace_atomically(d / RECORD_NAME, lambda tmp: tmp.write_text(dumps(rec, indent=1) + "\n",
                                                                           encoding="utf-8"))
    except OSError:
        pass


# --------------------------------------------------------------------------------------------
# the checks


def _kind(path: Path, flag: str) -> os.stat_result | None:
    """Rule 1: the lstat of ``path`` (None when absent) if a regular file may be written there."""
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
    if path.name == RECORD_NAME:
        raise AdvvizError(f"{flag} {path}: {RECORD_NAME} is advviz's record of the files it wrote in that "
                          f"folder; choose another name")
    return st


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.abspath(path)))


def _inside(p: Path, d: Path) -> bool:
    return p == d or d in p.parents


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def _files_in(d: Path) -> set[tuple[int, int]]:
    """Device + inode of the regular files in the folder ``d`` and in its sub-folders (a
    checkpoint's ``cache/``), so a hard link to one of them elsewhere is recognised."""
    ids = set()
    folders = [d]
    try:
        with os.scandir(d) as it:
            folders += [e.path for e in it if e.is_dir(follow_symlinks=False)]
        for f in folders:
            with os.scandir(f) as it:
                for e in it:
                    if e.is_file(follow_symlinks=False):
                        st = e.stat(follow_symlinks=False)
                        ids.add((st.st_dev, st.st_ino))
    except OSError:
        pass
    return ids


def _check_not_input(path: Path, st: os.stat_result | None, flag: str, inputs: list[tuple[Path, str]]) -> None:
    """Rule 2 for the inputs: ``(path, what)`` pairs, a folder meaning everything inside it."""
    real = _real(path)
    ident = (st.st_dev, st.st_ino) if st is not None else None
    for inp, what in inputs:
        ireal = _real(inp)
        if os.path.isdir(ireal):
            if _inside(real, ireal):
                raise AdvvizError(f"{flag} {path} lies inside {what} {inp}, an input of this command; choose a "
                                  f"path outside it")
            if ident is not None and ident in _files_in(ireal):
                raise AdvvizError(f"{flag} {path} is a hard link to a file of {what} {inp}, an input of this "
                                  f"command; choose another path")
        elif real == ireal or (ident is not None and ident == _identity(ireal)):
            raise AdvvizError(f"{flag} {path} is {what} {inp}, an input of this command; choose another path")


def _check_not_advviz_own(path: Path, st: os.stat_result | None, flag: str) -> None:
    """Rule 2 for advviz's own files: not inside an advviz folder (:func:`outdir.enclosing_advviz_dir`),
    and not the lock of an advviz run."""
    inside = outdir.enclosing_advviz_dir(path)
    if inside is not None:
        raise AdvvizError(f"{flag} {path} lies inside the advviz {inside[0]} {inside[1]}, which holds only the files "
                          f"advviz writes there; choose a path outside it")
    if st is not None and outdir.is_advviz_lock(path):
        raise AdvvizError(f"{flag} {path} is the lock of an advviz run; choose another path")


def _check_replaceable(path: Path, st: os.stat_result | None, flag: str, overwrite: bool,
                       beside: str | os.PathLike | None) -> None:
    """Rule 3."""
    if st is None or is_advviz_output(path):
        return
    if beside is not None:
        raise AdvvizError(f"{path} (written beside {beside}) exists and advviz did not write it; move it away or "
                          f"choose another {flag.split()[0]}")
    if not overwrite:
        raise AdvvizError(f"{flag} {path} exists and advviz did not write it; pass --overwrite to replace it, or "
                          f"choose another path")


def check_output_file(path: str | os.PathLike, flag: str = "--out", *, overwrite: bool = False,
                      inputs: Iterable[tuple[str | os.PathLike, str]] = (),
                      beside: str | os.PathLike | None = None) -> Path:
    """Rules 1–3 for one output path (``beside``: the named output a companion is written beside)."""
    path = Path(path)
    st = _kind(path, flag)
    _check_not_input(path, st, flag, [(Path(p), w) for p, w in inputs])
    _check_not_advviz_own(path, st, flag)
    _check_replaceable(path, st, flag, overwrite, beside)
    return path


def check_output_dir(directory: str | os.PathLike, flag: str, inputs: Iterable[tuple[str | os.PathLike, str]]) -> None:
    """Rule 2 for an output *folder* (``train --out``, swapped whole at each save): it must not hold
    an input of the run (a ``--unlabeled`` file inside the checkpoint it replaces)."""
    d = _real(directory)
    for inp, what in inputs:
        if _inside(_real(inp), d):
            raise AdvvizError(f"{flag} {directory} holds {what} {inp}, an input of this run, and would be replaced; "
                              f"choose another {flag}")


class Outputs:
    """The output files of one command, checked together: each against every input known so far
    (call :meth:`inputs` again as more become known — a data set named by a checkpoint's config)
    and against each other, all before the command's work."""

    def __init__(self, overwrite: bool = False, **inputs):
        self.overwrite = overwrite
        self._files: list[tuple[Path, str, str | None]] = []
        self._inputs: list[tuple[Path, str]] = []
        self.inputs(**inputs)

    def file(self, path: str | os.PathLike | None, flag: str, beside: str | os.PathLike | None = None) -> Path | None:
        if path is None:
            return None
        path = Path(path)
        for other, oflag, _ in self._files:
            if _real(other) == _real(path):
                raise AdvvizError(f"{flag} {path} is also {oflag}; give each output its own file")
        self._files.append((path, flag, None if beside is None else str(beside)))
        self._check(path, flag, beside)
        return path

    def inputs(self, checkpoints: Iterable[str | os.PathLike | None] = (),
               data: Iterable[tuple[str | None, str | os.PathLike | None]] = (),
               other: Iterable[tuple[str | os.PathLike | None, str]] = ()) -> "Outputs":
        """Add inputs (also the constructor's keywords): checkpoint / language-model folders, data
        sets (name or file, data dir), and ``(path, what)`` pairs; every output is checked again."""
        new = [(Path(c), "the checkpoint") for c in checkpoints if c]
        for name, data_dir in data:
            if name:
                new += [(f, "the data file") for f in dataset_files(name, data_dir)]
        new += [(Path(p), w) for p, w in other if p]
        self._inputs += new
        for path, flag, beside in self._files:
            self._check(path, flag, beside)
        return self

    def _check(self, path: Path, flag: str, beside: str | None) -> None:
        check_output_file(path, flag, overwrite=self.overwrite, inputs=self._inputs, beside=beside)


# --------------------------------------------------------------------------------------------
# writing


def write_output(path: str | os.PathLike, write: Callable[[Path], object], flag: str = "--out", *,
                 overwrite: bool = False, beside: str | os.PathLike | None = None) -> Path:
    """``write(tmp)`` fills a temporary sibling of ``path``, which then replaces ``path`` if rules
    1 and 3 still allow it (a file that appeared meanwhile is not advviz's: refused, kept); the
    bytes written are recorded as advviz's."""
    path = Path(path)
    written: list[tuple[int, str]] = []

    def check_and_hash(tmp: Path) -> None:
        _check_replaceable(path, _kind(path, flag), flag, overwrite, beside)
        written.append(_digest(tmp))

    _check_replaceable(path, _kind(path, flag), flag, overwrite, beside)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        outdir.replace_atomically(path, write, check_and_hash)
    except OSError as e:
        raise AdvvizError(f"cannot write {flag} {path}: {e.strerror or e}") from None
    _record(path, *written[0])
    return path
