"""Output directories: which ones advviz may replace, and the lock a run holds on one.

advviz replaces (or removes) a directory only when :func:`ownership` proves it is advviz's own:

    checkpoint      config.json (an advviz model config) + model.safetensors, and nothing but the
                    files advviz writes there (tokenizer files, metrics, log, eval.json, cache/)
    language model  config.json of kind "advviz-lstm-lm" + model.safetensors (+ vocab, metrics)
    resume state    ``.NAME.resume/``: state.json and tensors.safetensors only
    training job    ``ROOT/.jobs/ID/``: job.json and the runner's files only

A missing path may be created and an empty directory may be used; anything else (a folder of
notes, a group folder of checkpoints, the current directory, a regular file, a symbolic link, a
checkpoint with a file advviz did not write beside it) is refused with one line, whatever the
flags. ``train --out``, ``--resume``, ``lm train --out``, every atomic directory swap
(:func:`advviz.storage.checkpoint.atomic_dir`) and every removal go through :func:`check_replaceable`.

Temporary files. Every file advviz writes atomically (:func:`replace_atomically`) is first written
to a hidden sibling :func:`temp_sibling` names ``.NAME.tmp-<TOKEN>-<rand>``, where TOKEN is this process's
:data:`PROCESS_TOKEN` (random, 16 hex digits). A name of that shape alone proves nothing (a user
may well keep a ``.config.json.tmp-abc``), so a temporary counts as advviz's only when its TOKEN
is one advviz recorded: this process's own, or the ``temp_token`` of the advviz lock beside the
directory (the run that holds or held it: a run killed mid-write leaves both behind), or that of
a stale lock this process took over. Any other file inside a checkpoint makes it "a directory
holding files advviz did not write": refused with one line naming the file, never deleted.

A run holds :class:`OutputLock` on its output while it works: ``.NAME.lock`` beside the output
(the output itself is swapped whole by a rename at each save, so a file inside it would move
away with the old copy). The lock holds the pid, host, process start time, a random token and the
run's ``temp_token``; it is written whole to a temporary file and hard-linked into place (link()
fails when the name exists, as O_EXCL does), so a lock is never seen empty or half-written. It is
removed on every exit path. Only a lock with advviz's JSON whose process is gone (or whose pid now
belongs to a younger process) is stale and taken over; a live one refuses the second run with one
line naming the holder; an empty or non-JSON file at the lock's name is never removed (one line
asks the user to delete it if no run is going).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import stat
import time
import uuid
from pathlib import Path

from ..errors import AdvvizError
from .jsonio import dumps, read_json

CHECKPOINT, LM, RESUME, JOB = "checkpoint", "language model", "resume state", "training job"
HF_EXPORT = "Hugging Face export"  # `advviz export --format hf` (advviz/transfer.py)
ABSENT, EMPTY = "absent", "empty"
LM_KIND = "advviz-lstm-lm"
# where `advviz train` writes a run without --out, and the models root without $ADVVIZ_MODELS_DIR
# (here, below train and the models-root scanner, so that both read it)
DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent.parent / "models"

# Tokenizer files a Hugging Face ``save_pretrained`` may write (they vary by tokenizer class).
HF_TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                      "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model",
                      "tokenizer.model", "source.spm", "target.spm", "bpe.codes", "chat_template.jinja",
                      "chat_template.json"}
CHECKPOINT_FILES = {"config.json", "model.safetensors", "metrics.json", "train_log.jsonl", "eval.json",
                    "vocab.txt"} | HF_TOKENIZER_FILES
CHECKPOINT_DIRS = {"cache"}  # neighbour tables of `inspect`, word atlases of `advviz words` (analysis/words.py)
CACHE_FILE_RE = re.compile(r"^(neighbors-[a-z0-9]+-k\d+|words-[0-9a-f]{32})\.safetensors$")
LM_FILES = {"config.json", "model.safetensors", "vocab.txt", "metrics.json"}
#: the marker of an export folder (a transformers folder whose config.json is not advviz's)
HF_EXPORT_MARKER = "advviz-export.json"
HF_EXPORT_FILES = {"config.json", "model.safetensors", HF_EXPORT_MARKER} | HF_TOKENIZER_FILES
RESUME_FILES = {"state.json", "tensors.safetensors"}
JOB_FILES = {"job.json", "train.log", "runner.log", "pid", "rc", "done", "cancelled", "progress.json"}
# temporary files of advviz's atomic writes (temp_sibling): advviz's only when TOKEN is recorded
TEMP_RE = re.compile(r"^\..+\.tmp-(?P<token>[0-9a-f]{16})-[0-9a-f]{8}$")
MAX_CONFIG_BYTES = 16 << 20

#: the token in the name of every temporary file this process writes (see the module docstring)
PROCESS_TOKEN = uuid.uuid4().hex[:16]
_TAKEN_OVER: set[str] = set()  # temp tokens of dead runs whose stale lock this process took over


def temp_sibling(path: str | os.PathLike) -> Path:
    """A fresh hidden sibling of ``path`` to write before renaming it into place, named so that
    advviz can later recognise it as its own (:data:`TEMP_RE` + :data:`PROCESS_TOKEN`)."""
    path = Path(path)
    hidden = path.name if path.name.startswith(".") else f".{path.name}"
    return path.parent / f"{hidden}.tmp-{PROCESS_TOKEN}-{uuid.uuid4().hex[:8]}"


def replace_dir(tmp: Path, target: Path) -> None:
    """Put the complete directory ``tmp`` at ``target``: the old one is moved aside first (to a
    hidden ``.NAME.old-*`` sibling) and moved back if the final rename fails, so a reader sees the
    old or the new directory, whole. The caller has checked that the directory at ``target``, if
    any, is advviz's to replace."""
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(target, old)
    try:
        os.rename(tmp, target)
    except OSError:
        if old is not None:
            os.rename(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def replace_atomically(path: str | os.PathLike, write, before_replace=None) -> Path:
    """``write(tmp)`` fills a hidden temporary sibling of ``path`` (:func:`temp_sibling`), which then
    replaces ``path`` by a rename, after ``before_replace(tmp)`` if given; errors (OSError included)
    propagate. The temporary is created empty with O_EXCL before ``write`` runs, so its name is this
    call's alone, and removing it whatever happens removes only what this call wrote."""
    path = Path(path)
    for _ in range(16):
        tmp = temp_sibling(path)
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666))
            break
        except FileExistsError:
            continue
    else:
        raise OSError(errno.EEXIST, f"no free temporary name beside {path}")
    try:
        write(tmp)
        if before_replace is not None:
            before_replace(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return path


def _temp_tokens(path: Path) -> set[str]:
    """The temp tokens advviz recorded for the directory ``path``: this process's, those of stale
    locks it took over, and the ``temp_token`` of an advviz lock beside ``path``."""
    tokens = {PROCESS_TOKEN, *_TAKEN_OVER}
    _, info = OutputLock(path)._read()
    if _is_lock(info) and isinstance(info.get("temp_token"), str):
        tokens.add(info["temp_token"])
    return tokens


def _is_temp(name: str, tokens: set[str]) -> bool:
    m = TEMP_RE.match(name)
    return m is not None and m.group("token") in tokens


def _entries(path: Path) -> list[os.DirEntry]:
    with os.scandir(path) as it:
        return list(it)


def _config(path: Path) -> dict | None:
    try:
        cfg = read_json(path / "config.json", MAX_CONFIG_BYTES)
    except AdvvizError:
        return None
    return cfg if isinstance(cfg, dict) else None


def _foreign(path: Path, entries: list[os.DirEntry], files: set[str], dirs: set[str] = frozenset(),
             tokens: set[str] = frozenset()) -> list[str]:
    """Entries advviz would not have written in a directory of this kind (``tokens``: the temp
    tokens advviz recorded for it, :func:`_temp_tokens`)."""
    out = []
    for e in entries:
        if e.is_symlink():
            out.append(e.name)
        elif e.is_dir(follow_symlinks=False):
            if e.name not in dirs:
                out.append(e.name + "/")
            else:
                out += [f"{e.name}/{n}" for n in _foreign_cache(Path(e.path), tokens)]
        elif not e.is_file(follow_symlinks=False) or (e.name not in files and not _is_temp(e.name, tokens)):
            out.append(e.name)
    return out


def _foreign_cache(d: Path, tokens: set[str]) -> list[str]:
    try:
        return [e.name for e in _entries(d) if e.is_symlink() or not e.is_file(follow_symlinks=False)
                or not (CACHE_FILE_RE.match(e.name) or _is_temp(e.name, tokens))]
    except OSError as e:
        return [f"(cannot be listed: {e.strerror or e})"]


def ownership(path: str | os.PathLike) -> tuple[str | None, str]:
    """(kind, reason): kind is ``absent``, ``empty``, :data:`CHECKPOINT`, :data:`LM`, :data:`RESUME`,
    :data:`JOB`, or None when advviz cannot prove the path is its own (reason says why)."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return ABSENT, ""
    except OSError as e:
        return None, f"cannot be inspected ({e.strerror or e})"
    if stat.S_ISLNK(st.st_mode):
        return None, "is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return None, "is a file, not a directory" if stat.S_ISREG(st.st_mode) else "is not a directory"
    try:
        entries = _entries(path)
    except OSError as e:
        return None, f"cannot be listed ({e.strerror or e})"
    if not entries:
        return EMPTY, ""
    names = {e.name for e in entries}
    tokens = _temp_tokens(path)
    if HF_EXPORT_MARKER in names:
        kind, files, dirs = HF_EXPORT, HF_EXPORT_FILES, set()
    elif {"config.json", "model.safetensors"} <= names:
        cfg = _config(path)
        if cfg is None:
            return None, "has a config.json that is not an advviz config"
        if cfg.get("kind") == LM_KIND:
            kind, files, dirs = LM, LM_FILES, set()
        elif "format_version" in cfg or isinstance(cfg.get("model"), dict) and "family" in cfg["model"]:
            kind, files, dirs = CHECKPOINT, CHECKPOINT_FILES, CHECKPOINT_DIRS
        else:
            return None, "has a config.json that is not an advviz config"
    elif names <= RESUME_FILES | {n for n in names if _is_temp(n, tokens)} and names & RESUME_FILES:
        kind, files, dirs = RESUME, RESUME_FILES, set()
    elif "job.json" in names:
        kind, files, dirs = JOB, JOB_FILES, set()
    else:
        shown = sorted(names)[:3]
        return None, (f"is not empty and was not written by advviz (it holds {', '.join(shown)}"
                      f"{', …' if len(names) > 3 else ''})")
    foreign = _foreign(path, entries, files, dirs, tokens)
    if foreign:
        return None, (f"holds files advviz did not write ({', '.join(sorted(foreign)[:3])}"
                      f"{', …' if len(foreign) > 3 else ''})")
    return kind, ""


ADVVIZ_DIRS = (CHECKPOINT, LM, RESUME, JOB, HF_EXPORT)


def enclosing_advviz_dir(path: str | os.PathLike) -> tuple[str, Path] | None:
    """``(kind, folder)`` when writing ``path`` would put a file or folder inside an advviz
    checkpoint, language model, resume state or job folder — its parent, or its grandparent (a
    checkpoint's ``cache/``) — which must hold only what advviz writes there; else None."""
    real = Path(os.path.realpath(os.path.abspath(path)))
    for d in list(real.parents)[:2]:
        kind, _ = ownership(d)
        if kind in ADVVIZ_DIRS:
            return kind, d
    return None


def _contains_cwd(path: Path) -> bool:
    try:
        cwd = Path(os.getcwd()).resolve()
    except OSError:
        return False
    p = Path(os.path.abspath(path))
    try:
        p = p.resolve()
    except OSError:
        return False
    return cwd == p or p in cwd.parents


def check_replaceable(path: str | os.PathLike, kind: str, flag: str = "--out") -> str:
    """What is at ``path`` (``absent``, ``empty`` or ``kind``) when advviz may write ``kind`` there,
    replacing what is there; otherwise one :class:`AdvvizError` line (whatever the flags)."""
    path = Path(os.path.abspath(path))
    if _contains_cwd(path):
        raise AdvvizError(f"refusing to write a {kind} to {path}: it is the current directory or contains it; "
                          f"choose a new {flag}")
    inside = enclosing_advviz_dir(path)
    if inside is not None:
        raise AdvvizError(f"refusing to write a {kind} to {path}: it lies inside the advviz {inside[0]} {inside[1]}, "
                          f"which holds only the files advviz writes there; choose a new {flag}")
    found, reason = ownership(path)
    if found is None:
        raise AdvvizError(f"refusing to write a {kind} to {path}: it {reason}; advviz only replaces a "
                          f"directory it wrote itself — choose a new {flag}")
    if found not in (ABSENT, EMPTY, kind):
        raise AdvvizError(f"refusing to write a {kind} to {path}: it holds an advviz {found}; choose a new {flag}")
    return found


def remove_owned(path: str | os.PathLike, kind: str) -> bool:
    """Remove ``path`` only if it is advviz's own ``kind`` (True when removed; a missing path is
    False). Anything else raises one line and nothing is removed."""
    path = Path(path)
    found = check_replaceable(path, kind, flag="path")
    if found == ABSENT:
        return False
    shutil.rmtree(path)
    return True


# --------------------------------------------------------------------------------------------
# the lock


def _proc_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot, /proc/PID/stat field 22), which
    tells a live holder from a younger process that got the same pid; None when unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    except (OverflowError, ValueError):
        return False
    return True


def _is_lock(info: dict | None) -> bool:
    """Whether a parsed lock file is advviz's (its JSON holds a pid, a host and a token)."""
    return isinstance(info, dict) and {"pid", "host", "token"} <= set(info)


def _read_lock(path: Path) -> tuple[bytes | None, dict | None]:
    """(raw bytes, parsed JSON object or None) of a lock file; (None, None) when there is none.
    Never follows a symlink nor blocks on a FIFO; reads at most 64 KiB."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None, None
    except OSError:
        return b"", None
    try:
        raw = os.read(fd, 65536)
    except OSError:
        raw = b""
    finally:
        os.close(fd)
    try:
        info = json.loads(raw)
    except ValueError:
        return raw, None
    return raw, info if isinstance(info, dict) else None


def is_advviz_lock(path: str | os.PathLike) -> bool:
    """Whether the file ``path`` holds an advviz run's lock (its JSON: pid, host, token)."""
    return _is_lock(_read_lock(Path(path))[1])


class OutputLock:
    """``with OutputLock(out_dir): ...`` — at most one advviz run writes ``out_dir`` at a time."""

    def __init__(self, target: str | os.PathLike, what: str = "run"):
        target = Path(os.path.abspath(target))
        self.target, self.what = target, what
        self.path = target.parent / f".{target.name}.lock"
        self.token: str | None = None

    # -- holder info -------------------------------------------------------------------------
    def _read(self) -> tuple[bytes | None, dict | None]:
        return _read_lock(self.path)

    def _stale(self, info: dict | None) -> bool:
        """Only advviz's own lock (its JSON) of a process that is gone is stale. Anything else at
        the lock's name (empty, not JSON, other JSON) is never removed: advviz writes its lock
        whole before it appears (:meth:`_create`), so such a file is not one being written."""
        if not _is_lock(info):
            return False
        if info.get("host") != socket.gethostname():
            return False  # cannot tell from here
        pid = info.get("pid")
        if not isinstance(pid, int) or pid <= 0 or not _alive(pid):
            return True
        started = info.get("proc_start")
        now = _proc_start(pid)
        return started is not None and now is not None and started != now  # pid reused

    def _holder(self, raw: bytes, info: dict | None) -> str:
        if not _is_lock(info):
            what = "is empty" if not raw.strip() else "is not an advviz lock"
            return (f"{self.path} exists but {what} (advviz writes its locks whole); delete it if no advviz run "
                    f"is writing {self.target}")
        since = info.get("started")
        when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else ""
        host = info.get("host")
        where = "" if host == socket.gethostname() else f" on host {host}"
        return f"{self.target} is in use by another advviz {self.what} (pid {info.get('pid')}{where}{when})"

    # -- acquire / release ---------------------------------------------------------------------
    def _create(self, data: bytes) -> None:
        """Put a lock holding ``data`` at :attr:`path`, or raise FileExistsError: written to a
        temporary file first and hard-linked into place, so the lock never exists empty. Where the
        file system has no hard links, O_EXCL + write (a reader may then briefly see it empty and
        refuses, which is safe)."""
        tmp = temp_sibling(self.path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:  # from here on tmp is this call's own file, removed whatever happens
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, self.path)
                return
            except FileExistsError:
                raise
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.ENOSYS,
                                   errno.EMLINK):
                    raise
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def acquire(self) -> "OutputLock":
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                "proc_start": _proc_start(os.getpid()), "token": uuid.uuid4().hex, "temp_token": PROCESS_TOKEN,
                "target": str(self.target)}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise AdvvizError(f"cannot create {self.path.parent}: {e.strerror or e}") from None
        for _ in range(5):
            try:
                self._create(dumps(info).encode())
            except FileExistsError:
                raw, holder = self._read()
                if raw is None:
                    continue  # released meanwhile: try again
                if not self._stale(holder):
                    msg = self._holder(raw, holder)
                    if _is_lock(holder):
                        other_host = holder.get("host") != socket.gethostname()
                        msg += "; wait for it to finish or stop it" + \
                            (f"; if that run is gone, delete {self.path}" if other_host else "")
                    raise AdvvizError(msg) from None
                self._take_over(raw, holder)
                continue
            except OSError as e:
                raise AdvvizError(f"cannot lock {self.target} ({self.path}): {e.strerror or e}") from None
            self.token = info["token"]
            return self
        raise AdvvizError(f"could not lock {self.target}: its lock {self.path} keeps changing hands")

    def _take_over(self, stale_raw: bytes, stale: dict) -> None:
        """Move a stale lock aside, checking it is still the stale one (a racing run may have
        taken it over first: then its fresh lock is put back). The dead run's temp token is kept,
        so its leftover temporary files stay recognisably advviz's (:func:`_temp_tokens`)."""
        if isinstance(stale.get("temp_token"), str):
            _TAKEN_OVER.add(stale["temp_token"])
        aside = self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        except OSError as e:
            raise AdvvizError(f"cannot take over the stale lock {self.path}: {e.strerror or e}") from None
        try:
            with open(aside, "rb") as f:
                moved = f.read(65536)
        except OSError:
            moved = stale_raw
        if moved != stale_raw:  # not the one we judged stale: a live lock, put it back
            try:
                os.link(aside, self.path)
            except OSError:
                pass
        try:
            os.unlink(aside)
        except OSError:
            pass

    def release(self) -> None:
        if self.token is None:
            return
        _, info = self._read()
        if info is not None and info.get("token") == self.token:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        self.token = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
