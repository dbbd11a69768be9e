"""Kill a training run at any moment (SIGKILL, SIGINT) and resume it: the final metrics and
weights equal those of an uninterrupted run with the same seed (bit-identical on CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

pytestmark = pytest.mark.slow


def _args(data_dir, out, method="baseline", extra=()):
    return [sys.executable, "-m", "advviz", "train", "--dataset", "sst2-sent", "--arch", "lstm",
            "--method", method, "--max-train", "400", "--max-eval", "100", "--epochs", "2", "--batch-size", "16",
            "--hidden-size", "16", "--save-every", "3", "--eval-every", "10", "--data-dir", str(data_dir),
            "--out", str(out), "--quiet", *extra]


def _state_step(out: Path) -> int:
    p = out.parent / f".{out.name}.resume" / "state.json"
    try:
        return json.loads(p.read_text())["counters"]["step"]
    except (OSError, ValueError, KeyError):
        return -1


def _run_until(args, out: Path, min_step: int, sig) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 300
    while _state_step(out) < min_step and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert p.poll() is None, "the run finished before it could be interrupted"
    p.send_signal(sig)
    p.wait(timeout=120)
    return p.returncode


def _final(out: Path):
    return json.loads((out / "metrics.json").read_text()), load_file(str(out / "model.safetensors"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir):
    """Uninterrupted runs, one per method."""
    cache = {}

    def get(method):
        if method not in cache:
            out = tmp_path_factory.mktemp("ref") / method
            subprocess.run(_args(data_dir, out, method), check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            cache[method] = _final(out)
        return cache[method]

    return get


def _assert_same(a, b):
    (ma, wa), (mb, wb) = a, b
    for k in ("dev_accuracy", "dev_loss", "steps", "total_steps", "carl"):
        assert ma.get(k) == mb.get(k), k
    assert wa.keys() == wb.keys()
    for k in wa:
        assert (wa[k] == wb[k]).all(), k


@pytest.mark.parametrize("method,sig,min_step", [
    ("baseline", signal.SIGKILL, 4),
    ("baseline", signal.SIGKILL, 26),  # second epoch, after a completed epoch-end save
    ("freelb", signal.SIGKILL, 7),     # FreeLB's own generator (δ₀) must be restored too
    ("carl", signal.SIGKILL, 21),      # after L_D is on (step 16 of 50): banks, L_D step count
])
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, data_dir, reference, method, sig, min_step):
    out = tmp_path / "run"
    assert _run_until(_args(data_dir, out, method), out, min_step, sig) == -sig
    subprocess.run(_args(data_dir, out, method, ["--resume"]), check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    _assert_same(_final(out), reference(method))
    assert not (tmp_path / ".run.resume").exists()  # cleared once complete


def test_sigint_saves_then_resume_equals_uninterrupted(tmp_path, data_dir, reference):
    out = tmp_path / "run"
    code = _run_until(_args(data_dir, out), out, 5, signal.SIGINT)
    assert code == 130
    subprocess.run(_args(data_dir, out, extra=["--resume"]), check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    _assert_same(_final(out), reference("baseline"))


def test_resume_refuses_other_settings(tmp_path, data_dir):
    out = tmp_path / "run"
    _run_until(_args(data_dir, out), out, 3, signal.SIGKILL)
    p = subprocess.run(_args(data_dir, out, extra=["--resume", "--lr", "0.01"]), capture_output=True, text=True)
    assert p.returncode == 2 and "cannot resume" in p.stderr and "lr" in p.stderr


def test_resume_state_of_an_older_version_resumes_at_the_settings_it_lacks(tmp_path, data_dir):
    """A state written before a setting existed (here: --preset and --labeled-fraction, as an earlier
    advviz wrote it) ran at that setting's default: the resume goes on; a setting it does record and
    the user changes is still refused."""
    out = tmp_path / "run"
    _run_until(_args(data_dir, out), out, 3, signal.SIGKILL)
    state = out.parent / f".{out.name}.resume" / "state.json"
    saved = json.loads(state.read_text())
    for key in ("preset", "labeled_fraction"):
        del saved["run"]["train"][key]
    state.write_text(json.dumps(saved))
    p = subprocess.run(_args(data_dir, out, extra=["--resume", "--preset", "paper"]), capture_output=True, text=True)
    assert p.returncode == 2 and "cannot resume" in p.stderr and "preset" in p.stderr
    p = subprocess.run(_args(data_dir, out, extra=["--resume"]), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert json.loads((out / "metrics.json").read_text())["steps"] > 3


def test_existing_run_is_not_clobbered(tmp_path, data_dir):
    out = tmp_path / "run"
    subprocess.run(_args(data_dir, out, extra=["--max-steps", "2"]), check=True)
    p = subprocess.run(_args(data_dir, out, extra=["--max-steps", "2"]), capture_output=True, text=True)
    assert p.returncode == 2 and "already holds a run" in p.stderr


def test_counters_read_and_write_the_resume_format():
    """The Trainer's counters (a dataclass) read a resume state's ``counters`` object as every earlier
    advviz wrote it (keys in this order, the log beside them) and write it back byte for byte."""
    from advviz.train import Counters

    old = {"step": 7, "epoch": 1, "batch_in_epoch": 2, "seen": 56, "train_time": 1.5,
           "best": {"dev_accuracy": 0.5, "steps": 5}, "log": [{"step": 5, "dev_accuracy": 0.5}]}
    c = Counters.from_json(old)
    assert (c.step, c.epoch, c.batch_in_epoch, c.seen, c.best["steps"]) == (7, 1, 2, 56, 5)
    assert json.dumps(c.to_json(old["log"])) == json.dumps(old)
    assert json.dumps(Counters().to_json([])) == json.dumps({"step": 0, "epoch": 0, "batch_in_epoch": 0, "seen": 0,
                                                             "train_time": 0.0, "best": {"dev_accuracy": -1.0},
                                                             "log": []})
