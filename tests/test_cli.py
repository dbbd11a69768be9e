"""The command line as a user runs it: output, JSON contracts, one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from advviz.cli import main


def run_cli(*args, env_data_dir=None):
    """Run ``python -m advviz`` in a subprocess (the way a user does); returns (code, out, err)."""
    cmd = [sys.executable, "-m", "advviz", *map(str, args)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    return p.returncode, p.stdout, p.stderr


def test_data_list(data_dir, capsys):
    assert main(["data", "list", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "sst2-sent  train 6,920, dev 872, test 1,821" in out
    assert "World, Sports, Business, Sci/Tech" in out


def test_data_list_json(data_dir, capsys):
    assert main(["data", "list", "--data-dir", str(data_dir), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == {"sst2", "sst2-sent", "imdb", "agnews", "mr", "subj"}


@pytest.mark.parametrize("args,message", [
    (["train", "--dataset", "nope"], "unknown data set 'nope'; known:"),
    (["train", "--dataset", "sst2", "--data-dir", "/nonexistent"], "ADVVIZ_DATA_DIR"),
    (["train", "--epochs", "0"], "--epochs must be positive"),
    (["train", "--method", "freelb", "--steps", "0"], "--steps must be >= 1"),
    (["eval", "/nonexistent"], "is not an advviz checkpoint"),
    (["train", "--arch", "/no/such/encoder", "--max-steps", "1"], "could not load encoder"),
])
def test_user_errors_are_one_line(args, message, capsys, data_dir):
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("advviz: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_train_then_eval_json_subprocess(tmp_path, data_dir):
    out = tmp_path / "ck"
    code, stdout, stderr = run_cli("train", "--dataset", "sst2-sent", "--arch", "lstm", "--max-train", "120",
                                   "--max-eval", "60", "--max-steps", "4", "--hidden-size", "8", "--batch-size", "30",
                                   "--data-dir", data_dir, "--out", out)
    assert code == 0, stderr
    assert "best dev accuracy" in stdout and str(out) in stdout
    code, stdout, stderr = run_cli("eval", out, "--split", "test", "--max-examples", "50", "--json",
                                   "--data-dir", data_dir)
    assert code == 0, stderr
    res = json.loads(stdout)
    assert res["n"] == 50 and 0.0 <= res["accuracy"] <= 1.0 and {"macro_f1", "loss"} <= set(res)


@pytest.mark.parametrize("argv", [["train", "--dataset", "sst2"], ["eval", "D"],
                                  ["reconstruct", "D"], ["lm", "train", "--dataset", "sst2"],
                                  ["perplexity", "D", "--lm", "L", "--attack", "spgd"], ["compare", "A", "B"],
                                  ["project", "D", "--out", "x.csv"], ["report", "D", "--out", "r.md"]])
def test_every_long_running_command_takes_quiet(argv):
    from advviz.cli import build_parser

    assert build_parser([*argv, "--quiet"]).parse_args([*argv, "--quiet"]).quiet is True
