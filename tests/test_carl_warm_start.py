"""CARL's warm start is relative to the run: a checkpoint called CARL trained with L_D (issue 18).

The paper's SST-2 value (6315 steps) left L_D off for the whole of a 651-step sst2-sent run and
saved FreeLB, weight for weight, as CARL. Now the start is a share of the run by default, a start
the run cannot reach is refused before training, each checkpoint records how many steps L_D
shaped, and an old checkpoint without L_D is marked wherever it is listed.
"""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from advviz import registry
from advviz.storage.checkpoint import save_checkpoint
from advviz.cli import main
from advviz.errors import AdvvizError
from advviz.methods import build_method
from advviz.methods.carl import CARL, CARLConfig, ld_status, parse_carl_start, resolve_carl_start
from conftest import make_tiny_rnn


@pytest.mark.parametrize("spec,total,per_epoch,dataset,expected", [
    ("33%", 651, 217, "sst2-sent", 214), ("50%", 10, 5, None, 5), ("0%", 10, 5, None, 0),
    ("1ep", 651, 217, None, 217), ("0.5ep", 651, 217, None, 108), ("217", 651, 217, None, 217),
    (217, 651, 217, None, 217), ("paper", 10_000, 2105, "sst2", 6315), ("paper", 10_000, 3750, "agnews", 7750),
])
def test_carl_start_forms(spec, total, per_epoch, dataset, expected):
    assert resolve_carl_start(CARLConfig(carl_start=spec).carl_start, total, per_epoch, dataset) == expected


def test_default_is_a_share_of_the_run_not_the_papers_sst2_step_count():
    assert parse_carl_start(CARLConfig().carl_start) == ("share", 0.33)
    m = CARL()
    m.plan(651, 217, "sst2-sent")  # the documented command: sst2-sent, 3 epochs, batch 32
    assert 0 < m.start_step < 651


@pytest.mark.parametrize("name", ["carl", "carl+rar"])
def test_a_start_beyond_the_run_is_refused_with_one_line(name):
    m = build_method(name, {"carl_start": "6315"})
    with pytest.raises(AdvvizError) as e:
        m.plan(651, 217, "sst2-sent")
    msg = str(e.value)
    assert "\n" not in msg and "--carl-start" in msg and "651" in msg and "6315" in msg and "33%" in msg
    with pytest.raises(AdvvizError, match="paper gives a warm start only"):
        build_method(name, {"carl_start": "paper"}).plan(651, 217, "sst2-sent")


def test_cli_refuses_before_training_and_writes_nothing(tmp_path, data_dir, capsys):
    out = tmp_path / "carl"
    code = main(["train", "--dataset", "sst2-sent", "--method", "carl", "--max-train", "64", "--epochs", "1",
                 "--carl-start", "2ep", "--data-dir", str(data_dir), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "--carl-start 2ep is step 4" in err and "2 optimiser steps" in err
    assert not out.exists()


def test_old_checkpoints_without_L_D_are_marked(tmp_path):
    """A CARL checkpoint written before metrics["carl"] existed, saved at step 651 of a run with
    --carl-start 6315: listed and reported as FreeLB, never silently as CARL."""
    run = {"data": {"name": "sst2-sent", "label_names": ["negative", "positive"]},
           "method": {"name": "carl", "carl_start": 6315}, "train": {"arch": "lstm", "seed": 0}}
    root = tmp_path / "models"
    save_checkpoint(root / "old-carl", make_tiny_rnn("lstm"), run, {"dev_accuracy": 0.78, "steps": 651})
    save_checkpoint(root / "good-carl", make_tiny_rnn("lstm"), {**run, "method": {"name": "carl", "carl_start": "33%"}},
                    {"dev_accuracy": 0.77, "steps": 600, "carl": {"ld_steps": 386, "start_step": 214}})
    rows = {r["name"]: r for r in registry.scan(root)}
    assert rows["old-carl"]["ld_steps"] == 0 and "equivalent to FreeLB" in rows["old-carl"]["note"]
    assert "L_D never active" in registry.label(rows["old-carl"])
    assert rows["good-carl"]["ld_steps"] == 386 and registry.label(rows["good-carl"]) == "good-carl"
    assert ld_status({"name": "freelb"}, {}) is None
    assert ld_status({"name": "carl", "carl_start": 100}, {"steps": 150}) == {"ld_steps": 50, "note": ""}

    from advviz.analysis.report import _describe, _method
    import advviz

    old = _describe(advviz.load(root / "old-carl"))
    assert old["ld_steps"] == 0 and "equivalent to FreeLB" in _method(old)


# -- real training ----------------------------------------------------------------------------------

SMALL = ["--dataset", "sst2-sent", "--arch", "lstm", "--max-train", "200", "--max-eval", "64", "--epochs", "2",
         "--batch-size", "32", "--hidden-size", "16", "--eval-every", "2", "--log-every", "2", "--quiet"]


@pytest.mark.slow
def test_default_carl_run_trains_with_L_D_and_differs_from_freelb(tmp_path, data_dir):
    for m in ("carl", "freelb"):
        assert main(["train", *SMALL, "--method", m, "--data-dir", str(data_dir), "--out", str(tmp_path / m)]) == 0
    metrics = json.loads((tmp_path / "carl" / "metrics.json").read_text())
    total = metrics["total_steps"]  # 7 steps per epoch, 14 in all: the lstm preset's 67 % puts L_D on after 9
    assert metrics["carl"]["start_spec"] == "67%" and metrics["carl"]["start_step"] == int(0.67 * total) == 9
    assert metrics["carl"]["banks_filled_at"] == 9
    assert metrics["carl"]["ld_steps"] == metrics["steps"] - 9 > 0
    a, b = (load_file(str(tmp_path / m / "model.safetensors")) for m in ("carl", "freelb"))
    assert any((a[k] - b[k]).abs().max() > 1e-4 for k in a)
    log = [json.loads(x) for x in (tmp_path / "carl" / "train_log.jsonl").read_text().splitlines()]
    assert any("carl_loss" in x for x in log)
