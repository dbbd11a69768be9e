"""Training in a background process, for the app: start, poll progress, tail the log, cancel.

    run = TrainRun("my-lstm", {"dataset": "sst2-sent", "method": "spgd"}, {"k": 5})
    job = background.start(root, [run])
    background.status(root, job)   # {"state": "running", "step": 40, "total": 200, "log_tail": ..., ...}
    background.cancel(root, job)

A job is ``ROOT/.jobs/ID/`` holding ``job.json`` (its runs: TrainConfig / ModelOptions values and
the method's values, by field name), ``progress.json`` (step, total, last dev accuracy of the run
in progress: written by the Trainer's callbacks), ``train.log`` (what a run printed, errors
included) and ``rc`` (the exit code). The runner (``python -m advviz.background JOBDIR``) trains
the runs one after the other with :class:`advviz.train.Trainer` in its own process group, so
cancelling (SIGTERM: the Trainer saves its resume state and stops) ends exactly it. Nothing is
turned into command-line strings except the equivalent ``advviz train`` line shown in the log
(``config.to_argv``), and no progress is parsed out of text.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .config import to_argv
from .errors import AdvvizError
from .methods import METHODS, build_method, get_method, resolve_method
from .models import ModelOptions
from .registry import JOBS_DIR, check_name, models_root, resolve
from .storage import outdir
from .storage.jsonio import dumps
from .storage.outdir import replace_atomically
from .train import Interrupted, TrainConfig, Trainer, resolve_training

DEFAULT_SUITE = ("baseline", "spgd", "freelb", "carl", "rar")  # the README's default comparison
# The default set: a GloVe-LSTM on sst2-sent; each method with its family preset (SPGD ε 2.0 for the
# LSTM, CARL's L_D from 67 % of the run: docs/results.md §9). Nothing else is set here: every other
# setting is what `advviz train --method M` resolves (epochs, seed, the family's learning rate), so
# the app shows what the command line gives. (A private lr of 2e-3 here stalled one seed in three at
# chance for half the run: docs/results.md §12.)
DEFAULT_TRAIN = {"dataset": "sst2-sent", "arch": "lstm"}
#: seconds each run of the default set trains on one core of two, side by side (docs/results.md §10):
#: how the set is split over the cores (any other method counts as SPGD's)
DEFAULT_COST = {"baseline": 33, "spgd": 78, "freelb": 65, "carl": 104, "rar": 248}
TAIL_BYTES = 4000


@dataclass
class TrainRun:
    """One training run of a job: its name under the models root and its settings by field name
    (``train``: TrainConfig and ModelOptions fields; ``method``: the method's config fields)."""

    name: str
    train: dict
    method: dict = field(default_factory=dict)

    def configs(self, root, resume: bool = False):
        """(TrainConfig, ModelOptions, Method) for this run, writing to ROOT/NAME."""
        model_fields = {f.name for f in dataclasses.fields(ModelOptions)}
        train = {k: v for k, v in self.train.items() if k not in model_fields}
        cfg, opts = resolve_training(
            {**train, "out": str(resolve(root, self.name)), "resume": resume or train.get("resume") or False},
            {k: v for k, v in self.train.items() if k in model_fields})
        method = build_method(cfg.method, resolve_method(cfg.method, cfg.arch, self.method, cfg.preset))
        return cfg, opts, method

    def argv(self, root) -> list[str]:
        """The equivalent ``advviz train`` command line (shown in the job's log)."""
        model_fields = {f.name for f in dataclasses.fields(ModelOptions)}
        train = {k: v for k, v in self.train.items() if k not in model_fields}
        model = {k: v for k, v in self.train.items() if k in model_fields}
        return (["train"] + to_argv(TrainConfig, {**train, "out": str(resolve(root, self.name))})
                + to_argv(ModelOptions, model) + to_argv(get_method(train.get("method", "baseline")).Config, self.method))


def resumable(out: str | os.PathLike) -> bool:
    """A stopped run left its resume state in ``out`` (``advviz train --resume`` continues it)."""
    try:
        # deferred: `advviz --help` must not load it
        from .storage.resume import resume_dir
    except ImportError:
        return False
    return resume_dir(Path(out)).is_dir()


def restart(root: str | os.PathLike, job_id: str) -> str:
    """Start a stopped job again: the runs that did not finish, resumed where they stopped."""
    d = _job_dir(root, job_id)
    spec = _spec(d)
    done = set((d / "done").read_text().split()) if (d / "done").is_file() else set()
    return start(root, [TrainRun(**r) for r in spec["runs"] if r["name"] not in done])


def default_suite(root: str | os.PathLike | None = None) -> list[TrainRun]:
    """The default comparison: the GloVe-LSTM on sst2-sent with each method of
    :data:`DEFAULT_SUITE` that is registered now (method values: the family preset)."""
    seed = TrainConfig.seed
    return [TrainRun(f"lstm-sst2-sent-{m}-s{seed}", {**DEFAULT_TRAIN, "method": m}) for m in DEFAULT_SUITE
            if m in METHODS]


def _jobs(root) -> Path:
    d = models_root(root) / JOBS_DIR
    d.mkdir(parents=True, exist_ok=True)
    return d


def _job_dir(root, job_id: str) -> Path:
    check_name(job_id)
    return _jobs(root) / job_id


def split_runs(runs: list[TrainRun], workers: int) -> list[list[TrainRun]]:
    """``runs`` in at most ``workers`` groups of about equal cost (longest first onto the least
    loaded group; :data:`DEFAULT_COST`), each group in the order the runs were given."""
    order = {id(r): i for i, r in enumerate(runs)}
    cost = lambda r: DEFAULT_COST.get(r.train.get("method"), DEFAULT_COST["spgd"])  # noqa: E731
    groups: list[list[TrainRun]] = [[] for _ in range(max(1, workers))]
    load = [0.0] * len(groups)
    for r in sorted(runs, key=cost, reverse=True):
        i = load.index(min(load))
        groups[i].append(r)
        load[i] += cost(r)
    return [sorted(g, key=lambda r: order[id(r)]) for g in groups if g]


def start_parallel(root: str | os.PathLike, runs: list[TrainRun], workers: int | None = None) -> list[str]:
    """Train ``runs`` as one background job per core (at most ``workers``), each job one thread per
    core it has: small models (the default GloVe-LSTM) train faster side by side than one after
    another on two threads. Returns the job ids; every run is checked before any job starts."""
    for r in runs:
        r.configs(root)
    cpus = os.cpu_count() or 1
    workers = max(1, min(workers or cpus, cpus, len(runs)))
    return [start(root, group, threads=max(1, cpus // workers)) for group in split_runs(runs, workers)]


def start(root: str | os.PathLike, runs: list[TrainRun], threads: int | None = None, checked: bool = False) -> str:
    """Train ``runs`` one after another in the background; returns the job id. Settings are
    checked here (one clear error) before anything starts, unless ``checked``: the caller built
    each run's configs already (``TrainRun.configs``, as the app's training form does to show its
    error first), so they are not built twice. ``threads``: the job's torch threads (default:
    OMP_NUM_THREADS, else 2)."""
    if not runs:
        raise AdvvizError("nothing to train")
    for r in runs if not checked else ():
        r.configs(root)  # outputs stay inside the root; values are valid for their configs
    job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    d = _job_dir(root, job_id)
    d.mkdir()
    spec = {"id": job_id, "names": [r.name for r in runs], "runs": [dataclasses.asdict(r) for r in runs],
            "root": str(models_root(root)), "started": time.time()}
    (d / "job.json").write_text(dumps(spec, indent=2), encoding="utf-8")
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": str(threads) if threads else os.environ.get("OMP_NUM_THREADS", "2")}
    with open(d / "runner.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "advviz.background", str(d)], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env)
    (d / "pid").write_text(str(proc.pid))
    _CHILDREN[job_id] = proc
    return job_id


def _spec(d: Path) -> dict:
    return json.loads((d / "job.json").read_text(encoding="utf-8"))


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
    spec = _spec(d)
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
    try:
        prog = json.loads((d / "progress.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        prog = {}
    names = spec["names"]
    return {"id": job_id, "state": state, "names": names, "current": names[min(done_n, len(names) - 1)],
            "done": done_n, "n": len(names), "step": int(prog.get("step", 0)), "total": int(prog.get("total", 0)),
            "dev_accuracy": prog.get("dev_accuracy"), "log_tail": _tail(d / "train.log").strip(),
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
    if status(root, job_id)["state"] == "running":
        raise AdvvizError("the job is still running; cancel it first")
    outdir.remove_owned(_job_dir(root, job_id), outdir.JOB)


class _Progress:
    """The Trainer's callbacks for one run: step/total and the last dev accuracy in progress.json,
    each evaluation and log line in train.log."""

    def __init__(self, job_dir: Path, log):
        self.path, self.log, self.state, self.last = job_dir / "progress.json", log, {}, 0.0

    def _write(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last > 0.5:
            replace_atomically(self.path, lambda tmp: tmp.write_text(dumps(self.state), encoding="utf-8"))
            self.last = now

    def step(self, step: int, total: int) -> None:
        self.state.update(step=step, total=total)
        self._write(step == total)

    def line(self, line: dict) -> None:
        if "dev_accuracy" in line:
            self.state["dev_accuracy"] = line["dev_accuracy"]
            self.log.write(f"step {line['step']}: dev accuracy {line['dev_accuracy']:.4f}\n")
            self._write(True)
        elif "loss" in line:
            self.log.write(f"step {line['step']}: loss {line['loss']:.4f}\n")
        self.log.flush()


def _run(job_dir: Path) -> int:
    """The runner: each run in turn with the Trainer, output in train.log; stop at the first failure."""
    spec = _spec(job_dir)
    root = spec["root"]
    rc = 0
    with open(job_dir / "train.log", "a", encoding="utf-8") as log:
        for r in spec["runs"]:
            run = TrainRun(**r)
            progress = _Progress(job_dir, log)
            try:
                resume = resumable(resolve(root, run.name))
                cfg, opts, method = run.configs(root, resume)
                log.write(f"=== {run.name}: advviz {' '.join(run.argv(root))}{' --resume' if resume else ''}\n")
                log.flush()
                res = Trainer(cfg, method, opts, progress=False, callback=progress.line,
                              on_step=progress.step).fit()
                log.write(f"best dev accuracy {res.metrics['dev_accuracy']:.4f} at step {res.metrics['steps']}; "
                          f"checkpoint: {res.out_dir}\n")
            except Interrupted as e:
                log.write(f"advviz: {e}\n")
                rc = e.exit_code
            except AdvvizError as e:
                log.write(f"advviz: error: {e}\n")
                rc = e.exit_code
            except Exception:  # a bug: its traceback belongs in the log
                import traceback

                log.write(traceback.format_exc())
                rc = 1
            log.flush()
            if rc != 0:
                break
            with open(job_dir / "done", "a") as f:
                f.write(run.name + "\n")
    (job_dir / "rc").write_text(str(rc))
    return rc


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # replaced by the Trainer while it trains
    sys.exit(_run(Path(sys.argv[1])))
