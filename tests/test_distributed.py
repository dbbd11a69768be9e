"""The training loop unchanged under ``torchrun`` / ``accelerate launch`` with 2 CPU processes
(gloo): data sharded, metrics reduced, only rank 0 writes — and the same result as one process
with the same global batch (within float summation-order tolerance)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

# dropout 0 and FreeLB's γ = 0: the only randomness left is the data order, which is global.
COMMON = ["--dataset", "sst2-sent", "--arch", "lstm", "--max-train", "320", "--max-eval", "100", "--max-steps", "8",
          "--eval-every", "4", "--hidden-size", "16", "--dropout", "0", "--quiet"]


def _torchrun() -> list[str]:
    exe = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("torchrun not installed")
    return [exe, "--nproc_per_node", "2", "--master_port", "29533", "-m", "advviz"]


@pytest.mark.parametrize("method_args", [["--method", "baseline"], ["--method", "freelb", "--init-mag", "0"]])
def test_two_processes_match_one(tmp_path, data_dir, method_args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one, two = tmp_path / "one", tmp_path / "two"
    args = [*COMMON, *method_args, "--data-dir", str(data_dir)]
    subprocess.run([sys.executable, "-m", "advviz", "train", *args, "--batch-size", "32", "--out", str(one)],
                   check=True, env=env, timeout=600)
    p = subprocess.run([*_torchrun(), "train", *args, "--batch-size", "16", "--out", str(two)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.count("best dev accuracy") == 1  # only rank 0 reports
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert ma["steps"] == mb["steps"] and ma["total_steps"] == mb["total_steps"] == 8
    assert abs(ma["dev_loss"] - mb["dev_loss"]) < 1e-4 and ma["dev_accuracy"] == mb["dev_accuracy"]
    wa, wb = load_file(str(one / "model.safetensors")), load_file(str(two / "model.safetensors"))
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-5
    cfg = json.loads((two / "config.json").read_text())
    assert cfg["num_processes"] == 2
