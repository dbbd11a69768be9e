"""The first thing a new user sees (issue 29): the default set trains with the settings `advviz train`
resolves, `advviz app` trains it one job per core, and a run that stalls at chance is marked
wherever it is shown (metrics.json, the Models table, `advviz report`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from advviz import background, registry
from advviz.cli import build_parser, main
from advviz.config import given
from advviz.evaluate import at_chance, chance_record, majority_share, stall_note
from advviz.train import TrainConfig

TINY = {"arch": "bigru", "hidden_size": 4, "embedding_dim": 4, "mlp_hidden": 4}


def _toy(path: Path, n: int = 200) -> Path:
    pos, neg = "good great fine lovely superb".split(), "bad awful dull boring poor".split()
    rows = [f"the film was {(pos if i % 2 else neg)[i % 5]} and {(pos if i % 2 else neg)[(i // 2) % 5]}\t{i % 2}\n"
            for i in range(n)]
    path.write_text("text\tlabel\n" + "".join(rows))
    return path


def _cli_config(argv: list[str]) -> TrainConfig:
    args = build_parser(argv).parse_args(argv)
    return TrainConfig(**given(args, TrainConfig))


@pytest.mark.parametrize("method", background.DEFAULT_SUITE)
def test_default_set_trains_with_the_settings_advviz_train_resolves(tmp_path, method):
    """No private learning rate (the 2e-3 that stalled seed 0 at chance), no private epochs or seed:
    the app's run of a method is the command line's `advviz train --method M` on the same data."""
    run = next(r for r in background.default_suite(tmp_path) if r.train["method"] == method)
    cfg, opts, m = run.configs(tmp_path)
    cli = _cli_config(["train", "--dataset", "sst2-sent", "--arch", "lstm", "--method", method, "--out", cfg.out])
    assert dataclasses.asdict(cfg) == dataclasses.asdict(cli)
    assert cfg.resolved_lr == cli.resolved_lr == 1e-3
    assert run.name == f"lstm-sst2-sent-{method}-s{cli.seed}"
    assert "--lr" not in run.argv(tmp_path)


def test_chance_record():
    assert majority_share([0, 0, 0, 1]) == 0.75
    log = [{"step": 5, "loss": 0.69}, {"step": 10, "probe_accuracy": 0.51}, {"step": 20, "probe_accuracy": 0.515},
           {"step": 30, "dev_accuracy": 0.60}, {"step": 40, "dev_accuracy": 0.80}]
    rec = chance_record(log, 0.5, 40)
    assert rec["left_chance_at_step"] == 30 and rec["stalled"] is True
    assert stall_note({"chance": rec}) == "did not leave chance until step 30 of 40"
    rec = chance_record(log, 0.5, 80)
    assert rec["left_chance_at_step"] == 30 and rec["stalled"] is False and stall_note({"chance": rec}) == ""
    rec = chance_record(log[:3], 0.5, 20)
    assert rec["left_chance_at_step"] is None and rec["stalled"] is True
    assert stall_note({"chance": rec}) == "never left chance (20 steps)"
    assert stall_note({}) == stall_note(None) == stall_note({"chance": "x"}) == ""  # older checkpoints
    # above the bar by noise, then back at chance: it had not left (the default set's lr-2e-3 runs)
    bounce = [{"step": 10, "probe_accuracy": 0.53}, {"step": 20, "probe_accuracy": 0.51},
              {"step": 30, "dev_accuracy": 0.512}, {"step": 40, "probe_accuracy": 0.70}, {"step": 60, "dev_accuracy": 0.75}]
    rec = chance_record(bounce, 0.5, 60)
    assert rec["left_chance_at_step"] == 40 and rec["stalled"] is True
    assert at_chance(bounce[:3], 0.5) and not at_chance(bounce, 0.5) and at_chance([], 0.5)
    assert chance_record([{"step": 5, "dev_accuracy": 0.9}], 0.5, 10)["left_chance_at_step"] == 5


def _train(toy: Path, out: Path, *extra: str, epochs: int = 4) -> dict:
    argv = ["train", "--dataset", str(toy), "--out", str(out), "--quiet", "--epochs", str(epochs), "--seed", "0",
            *[f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()], *extra]
    assert main(argv) == 0
    return json.loads((out / "metrics.json").read_text())


def test_a_stalled_run_is_marked_in_metrics_models_and_report(tmp_path, capsys):
    """A learning rate of almost 0 keeps the run at chance: metrics.json says so, and so do the
    Models table's note and `advviz report`; a run that learns carries no mark."""
    toy = _toy(tmp_path / "toy.tsv")
    stalled = _train(toy, tmp_path / "stalled", "--lr", "1e-9")
    rec = stalled["chance"]
    assert rec["stalled"] is True and rec["left_chance_at_step"] is None and rec["total_steps"] == stalled["total_steps"]
    assert rec["majority_share"] == pytest.approx(0.5)
    log = [json.loads(x) for x in (tmp_path / "stalled" / "train_log.jsonl").read_text().splitlines()]
    assert sum("probe_accuracy" in x for x in log) >= 10  # probed a twentieth of the run apart while at chance
    learned = _train(toy, tmp_path / "learned", "--lr", "0.05", epochs=10)
    assert learned["chance"]["stalled"] is False and learned["chance"]["left_chance_at_step"] is not None
    log = [json.loads(x) for x in (tmp_path / "learned" / "train_log.jsonl").read_text().splitlines()]
    left = learned["chance"]["left_chance_at_step"]
    assert not [x for x in log if "probe_accuracy" in x and x["step"] > left]  # no probes once above chance
    assert learned["chance"]["majority_share"] == stalled["chance"]["majority_share"]

    rows = {r["name"]: r for r in registry.scan(tmp_path)}
    assert rows["stalled"]["note"].startswith("never left chance")
    assert "chance" not in rows["learned"]["note"]

    capsys.readouterr()
    assert main(["report", str(tmp_path / "stalled"), str(tmp_path / "learned"), "--dataset", str(toy),
                 "--split", "dev", "--out", str(tmp_path / "r.md")]) == 0
    md = (tmp_path / "r.md").read_text()
    assert "never left chance" in md


def test_app_first_run_trains_the_set_one_job_per_core(tmp_path, monkeypatch, capsys):
    """`advviz app` on an empty root trains the default set as the Models page does (one background
    job per core), with a bar per job on the terminal, and opens on the checkpoints it wrote."""
    from advviz.commands import app as app_cmd

    toy = _toy(tmp_path / "toy.tsv", 60)
    runs = [background.TrainRun(f"r{i}", {"dataset": str(toy), **TINY, "max_steps": 2, "method": m})
            for i, m in enumerate(["baseline", "freelb", "advt"])]
    monkeypatch.setattr(app_cmd, "default_suite", lambda root: runs)
    monkeypatch.setattr(app_cmd.os, "cpu_count", lambda: 2)
    started = []
    real = app_cmd.start_parallel
    monkeypatch.setattr(app_cmd, "start_parallel", lambda root, r, w=None: started.extend(real(root, r, w)) or started)
    root = tmp_path / "models"
    app_cmd.train_default_suite(root)
    assert len(started) == 2  # two cores: two jobs
    assert all(registry.is_checkpoint(root / r.name) for r in runs)
    err = capsys.readouterr().err
    assert "2 at a time" in err and "r0" in err
    assert all(background.status(root, j)["state"] == "done" for j in started)
