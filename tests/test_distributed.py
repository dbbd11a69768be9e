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


def _bank_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import torch
    import torch.distributed as dist

    from advviz.distributed import gather_rows
    from advviz.methods.memory_bank import MemoryBank

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    bank = MemoryBank(6, 2)
    bank.fill(torch.arange(6), torch.ones(6, 2))
    # unequal shares, as in an epoch's last batch: rank 0 has ids 0,1,2; rank 1 has ids 4,5
    idx = torch.tensor([0, 1, 2]) if rank == 0 else torch.tensor([4, 5])
    reps = (idx.float() + 10).unsqueeze(1).repeat(1, 2)
    bank.update(gather_rows(idx), gather_rows(reps), momentum=0.5)
    from safetensors.torch import save_file

    save_file({"memory": bank.memory}, f"{out_dir}/bank{rank}.safetensors")
    dist.destroy_process_group()


@pytest.mark.parametrize("world", [2])
def test_carl_banks_stay_global_across_processes(tmp_path, world):
    """Eq. 5 applied with every rank's rows on every rank: the banks are identical and equal the
    one-process update over the global batch."""
    import socket

    import torch
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_bank_worker, args=(world, port, str(tmp_path)), nprocs=world, join=True)
    b0 = load_file(str(tmp_path / "bank0.safetensors"))["memory"]
    b1 = load_file(str(tmp_path / "bank1.safetensors"))["memory"]
    expected = torch.ones(6, 2)
    for i in (0, 1, 2, 4, 5):
        expected[i] = 0.5 * 1 + 0.5 * (i + 10)
    assert torch.equal(b0, b1) and torch.equal(b0, expected)


def test_carl_trains_under_two_processes(tmp_path, data_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([*_torchrun(), "train", *COMMON, "--method", "carl", "--carl-start", "3", "--batch-size", "16",
                        "--data-dir", str(data_dir), "--out", str(tmp_path / "carl")],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    metrics = json.loads((tmp_path / "carl" / "metrics.json").read_text())
    assert metrics["total_steps"] == 8
    assert metrics["carl"]["start_step"] == 3 and metrics["carl"]["ld_steps"] == metrics["steps"] - 3 > 0


def test_carl_start_is_checked_against_the_steps_two_processes_take(tmp_path, data_dir):
    """320 examples at 16 per process: one process takes 20 steps an epoch, two take 10 (a step is
    one global batch), so --carl-start 15 fits one process and is refused under two."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["train", "--dataset", "sst2-sent", "--arch", "lstm", "--max-train", "320", "--max-eval", "50",
            "--epochs", "1", "--hidden-size", "16", "--method", "carl", "--carl-start", "15", "--batch-size", "16",
            "--data-dir", str(data_dir), "--quiet"]
    p = subprocess.run([*_torchrun(), *args, "--out", str(tmp_path / "two")], capture_output=True, text=True,
                       env=env, timeout=600)
    assert p.returncode != 0
    assert "--carl-start 15 is step 15, but this run has 10 optimiser steps" in p.stderr
    assert not (tmp_path / "two").exists()
    from advviz.methods import build_method

    build_method("carl", {"carl_start": "15"}).plan(20, 20, "sst2-sent")  # one process: fine
