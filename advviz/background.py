"""Training in a background process, for the app: start, poll progress, tail the log, cancel.

    job = background.start(root, [train_argv("my-lstm", {...}, {...})])
    background.status(root, job)   # {"state": "running", "step": 40, "total": 200, "log_tail": ..., ...}
    background.cancel(root, job)

A job is ``ROOT/.jobs/ID/`` holding ``job.json`` (the commands, pid, start time), ``train.log``
(stdout+stderr of ``python -m advviz train ... --out ROOT/NAME``) and ``rc`` (exit code, written
by the runner when a command ends). The runner (``python -m advviz.background JOBDIR``) runs the
job's commands one after the other in its own process group, so cancelling kills exactly it and
its children. Progress is read from tqdm's ``step/total`` in the log and the evaluations
(``step N: dev accuracy A``) it prints.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from .errors import AdvvizError
from .registry import JOBS_DIR, check_name, models_root, resolve

DEFAULT_SUITE = ("baseline", "spgd", "freelb", "carl", "rar")  # the README's default comparison
DEFAULT_TRAIN = {"dataset": "sst2-sent", "arch": "lstm", "epochs": 3, "lr": 2e-3, "seed": 0}
# Per-method settings of the default set (docs/results.md): the papers' SPGD ε (25, for 230-token
# IMDB reviews and 256-d embeddings) collapses a GloVe-50d LSTM on 20-token sentences, ≈0.08·ε fits.
# CARL's default warm start (a third of the run) is one epoch here.
DEFAULT_METHOD_ARGS = {"spgd": {"epsilon": 2.0}}
TAIL_BYTES = 4000
_STEP_RE = re.compile(r"(\d+)/(\d+) \[")
_EVAL_RE = re.compile(r"step (\d+): dev accuracy ([0-9.]+)")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def train_argv(out: str | os.PathLike, train: dict, method_values: dict | None = None) -> list[str]:
    """``advviz train`` arguments from TrainConfig / ModelOptions values and the method's config
    values (field name -> value; the flags come from the fields' metadata)."""
    from .methods import get_method
    from .models import ModelOptions
    from .train import TrainConfig

    known = {f.name for f in dataclasses.fields(TrainConfig)} | {f.name for f in dataclasses.fields(ModelOptions)}
    argv = ["train"]
    for k, v in train.items():
        if k not in known or k == "out" or v is None or v is False:
            continue
        argv += [_flag(k)] if v is True else [_flag(k), str(v)]
    method = train.get("method", "baseline")
    for f in dataclasses.fields(get_method(method).Config):
        flag = f.metadata.get("flag")
        if not flag or method_values is None or f.name not in method_values or method_values[f.name] is None:
            continue
        v = method_values[f.name]
        if isinstance(v, bool):
            argv.append(flag if v else "--no-" + flag[2:])
        else:
            argv += [flag, str(v)]
    return argv + ["--out", str(out)]


def resumable(out: str | os.PathLike) -> bool:
    """A stopped run left its resume state in ``out`` (``advviz train --resume`` continues it)."""
    try:
        from .resume import resume_dir
    except ImportError:
        return False
    return resume_dir(Path(out)).is_dir()


def with_resume(commands: list[tuple[str, list[str]]]) -> list[tuple[str, list[str]]]:
    """``--resume`` added to each train command whose output holds a stopped run."""
    out = []
    for name, argv in commands:
        target = argv[argv.index("--out") + 1] if "--out" in argv else None
        resume = target is not None and "--resume" not in argv and resumable(target)
        out.append((name, argv + ["--resume"] if resume else argv))
    return out


def restart(root: str | os.PathLike, job_id: str) -> str:
    """Start a stopped job again: the commands that did not finish, resumed where they stopped."""
    d = _job_dir(root, job_id)
    spec = json.loads((d / "job.json").read_text(encoding="utf-8"))
    done = set((d / "done").read_text().split()) if (d / "done").is_file() else set()
    todo = [(n, a) for n, a in zip(spec["names"], spec["commands"]) if n not in done]
    return start(root, with_resume(todo))


def default_suite(root: str | os.PathLike | None = None) -> list[tuple[str, list[str]]]:
    """(name, argv) for the default comparison: the GloVe-LSTM on sst2-sent with each method of
    :data:`DEFAULT_SUITE` that is registered now."""
    from .methods import METHODS

    root = models_root(root)
    out = []
    for m in DEFAULT_SUITE:
        if m in METHODS:
            name = f"lstm-sst2-sent-{m}-s0"
            out.append((name, train_argv(root / name, {**DEFAULT_TRAIN, "method": m}, DEFAULT_METHOD_ARGS.get(m))))
    return with_resume(out)


def _jobs(root) -> Path:
    d = models_root(root) / JOBS_DIR
    d.mkdir(parents=True, exist_ok=True)
    return d


def _job_dir(root, job_id: str) -> Path:
    check_name(job_id)
    return _jobs(root) / job_id


def start(root: str | os.PathLike, commands: list[tuple[str, list[str]]]) -> str:
    """Start ``advviz`` commands (name, argv) one after another in the background; returns the job id."""
    if not commands:
        raise AdvvizError("nothing to train")
    for name, _ in commands:
        resolve(root, name)  # outputs stay inside the root
    job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    d = _job_dir(root, job_id)
    d.mkdir()
    spec = {"id": job_id, "names": [n for n, _ in commands], "commands": [a for _, a in commands],
            "started": time.time()}
    (d / "job.json").write_text(json.dumps(spec, indent=2), encoding="utf-8")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    with open(d / "runner.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "advviz.background", str(d)], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env)
    (d / "pid").write_text(str(proc.pid))
    _CHILDREN[job_id] = proc
    return job_id


_CHILDREN: dict[str, subprocess.Popen] = {}  # reaped on poll so finished runners leave no zombies


def _alive(job_id: str, pid: int) -> bool:
    proc = _CHILDREN.get(job_id)
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a zombie (parent did not reap it) is not running
        return " Z " not in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:4]
    except OSError:
        return True


def _tail(path: Path, n: int = TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n))
            raw = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return raw


def status(root: str | os.PathLike, job_id: str) -> dict:
    """state (running | done | failed | cancelled), current command, step/total, last dev accuracy, log tail."""
    d = _job_dir(root, job_id)
    spec = json.loads((d / "job.json").read_text(encoding="utf-8"))
    pid = int((d / "pid").read_text()) if (d / "pid").is_file() else -1
    rc_text = (d / "rc").read_text().strip() if (d / "rc").is_file() else None
    done_n = len((d / "done").read_text().split()) if (d / "done").is_file() else 0
    if (d / "cancelled").is_file():
        state = "cancelled"
    elif rc_text is not None:
        state = "done" if rc_text == "0" else "failed"
    elif pid > 0 and _alive(job_id, pid):
        state = "running"
    else:
        state = "failed"  # the runner died without writing its exit code
    raw = _tail(d / "train.log", 64_000)
    steps = _STEP_RE.findall(raw)
    evals = _EVAL_RE.findall(raw)
    lines = raw.replace("\r", "\n").splitlines()
    tail = "\n".join(ln for ln in lines if ln.strip() and not _STEP_RE.search(ln))[-TAIL_BYTES:]
    if steps:
        tail += f"\n{lines[-1].strip()}" if lines and _STEP_RE.search(lines[-1]) else ""
    names = spec["names"]
    return {"id": job_id, "state": state, "names": names, "current": names[min(done_n, len(names) - 1)],
            "done": done_n, "n": len(names), "step": int(steps[-1][0]) if steps else 0,
            "total": int(steps[-1][1]) if steps else 0,
            "dev_accuracy": float(evals[-1][1]) if evals else None, "log_tail": tail.strip(),
            "started": spec["started"], "rc": rc_text}


def jobs(root: str | os.PathLike) -> list[dict]:
    """Status of every job under the root, newest first."""
    d = models_root(root) / JOBS_DIR
    if not d.is_dir():
        return []
    out = []
    for p in sorted(d.iterdir(), reverse=True):
        if (p / "job.json").is_file():
            try:
                out.append(status(root, p.name))
            except (OSError, ValueError, KeyError, AdvvizError):
                continue
    return out


def running_names(root: str | os.PathLike) -> set[str]:
    return {s["current"] for s in jobs(root) if s["state"] == "running"}


def cancel(root: str | os.PathLike, job_id: str) -> None:
    """Stop a running job: SIGTERM to its process group (the runner and its train process)."""
    d = _job_dir(root, job_id)
    (d / "cancelled").write_text(str(time.time()))
    pid = int((d / "pid").read_text()) if (d / "pid").is_file() else -1
    if pid <= 0 or (d / "rc").is_file() or not _alive(job_id, pid):
        return  # already over (and the pid may belong to someone else by now)
    _signal_group(pid, signal.SIGTERM)  # pid leads its own group (start_new_session)
    proc = _CHILDREN.pop(job_id, None)
    if proc is not None:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _signal_group(pid, signal.SIGKILL)
            proc.wait(timeout=5)
    for _ in range(100):  # the train process leaves a moment after the runner
        if not _group_alive(pid):
            return
        time.sleep(0.1)
    _signal_group(pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def forget(root: str | os.PathLike, job_id: str) -> None:
    """Remove a finished job's folder (not its checkpoint)."""
    from . import outdir

    if status(root, job_id)["state"] == "running":
        raise AdvvizError("the job is still running; cancel it first")
    outdir.remove_owned(_job_dir(root, job_id), outdir.JOB)


def _run(job_dir: Path) -> int:
    """The runner: each command in turn, output appended to train.log; stop at the first failure."""
    spec = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
    rc = 0
    with open(job_dir / "train.log", "ab", buffering=0) as log:
        for name, argv in zip(spec["names"], spec["commands"]):
            log.write(f"=== {name}: advviz {' '.join(argv)}\n".encode())
            rc = subprocess.call([sys.executable, "-m", "advviz", *argv], stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)
            if rc != 0:
                break
            with open(job_dir / "done", "a") as f:
                f.write(name + "\n")
    (job_dir / "rc").write_text(str(rc))
    return rc


if __name__ == "__main__":
    sys.exit(_run(Path(sys.argv[1])))
