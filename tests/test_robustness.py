"""`evaluate_under_attack` and `advviz eval --attack`."""

from __future__ import annotations

import json

import pytest

from advviz.cli import main
from advviz.errors import AdvvizError
from advviz.analysis.robustness import evaluate_under_attack, parse_epsilons
from conftest import LABELS, SENTENCES
from test_inspect import save_tiny, stub

KEYS = {"name", "epsilon", "accuracy", "cosine", "euclidean", "flip_rate", "per_example"}


def test_parse_epsilons():
    assert parse_epsilons("0.02,0.075, 0.1") == [0.02, 0.075, 0.1]
    for bad in ("", "0.1,", "a", "0.1,-2", "nan", "inf"):
        with pytest.raises(AdvvizError, match="--eps"):
            parse_epsilons(bad)


def test_per_epsilon_rows(tiny_model):
    res = evaluate_under_attack(stub(tiny_model), SENTENCES, LABELS, "pgd", {"steps": 2}, [0.0001, 0.5, 5.0],
                                batch_size=4)
    assert [r["epsilon"] for r in res] == [0.0001, 0.5, 5.0]
    for r in res:
        assert KEYS <= set(r) and r["name"] == "pgd" and r["steps"] == 2
        assert [p["index"] for p in r["per_example"]] == list(range(len(SENTENCES)))
        assert all(p["adv_loss"] >= p["loss"] - 1e-4 for p in r["per_example"])
        assert -1 <= r["cosine"] <= 1 + 1e-6 and r["euclidean"] >= 0 and 0 <= r["flip_rate"] <= 1
    assert res[0]["cosine"] > 0.999 and res[0]["accuracy"] == res[0]["clean_accuracy"]
    assert res[2]["euclidean"] >= res[0]["euclidean"]  # a larger ball moves the representation further
    assert res[2]["accuracy"] <= res[0]["accuracy"]


def test_default_epsilon_and_errors(tiny_lstm):
    [r] = evaluate_under_attack(stub(tiny_lstm), SENTENCES[:2], LABELS[:2], "advt")
    assert r["epsilon"] == 0.4  # the lstm family preset (the paper's 5 collapses a GloVe-50d LSTM)
    from advviz.analysis.attacks import paper_overrides

    [r] = evaluate_under_attack(stub(tiny_lstm), SENTENCES[:2], LABELS[:2], "advt", paper_overrides("advt"))
    assert r["epsilon"] == 5.0
    with pytest.raises(AdvvizError, match="--k is not a setting"):
        evaluate_under_attack(stub(tiny_lstm), SENTENCES[:2], LABELS[:2], "advt", {"k": 3})
    with pytest.raises(AdvvizError, match="labels"):
        evaluate_under_attack(stub(tiny_lstm), SENTENCES[:2], LABELS[:1], "advt")
    with pytest.raises(AdvvizError, match="epsilon"):
        evaluate_under_attack(stub(tiny_lstm), SENTENCES[:2], LABELS[:2], "advt", epsilons=[0.0])


@pytest.mark.slow
def test_cli_eval_attack(tmp_path, capsys, data_dir):
    d = save_tiny(tmp_path)
    per = tmp_path / "per.jsonl"
    argv = ["eval", str(d), "--max-examples", "12", "--data-dir", str(data_dir), "--attack", "pgd",
            "--eps", "0.02,0.1", "--steps", "2", "--per-example", str(per), "--json"]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    assert {"accuracy", "n", "attacks"} <= set(res) and [a["epsilon"] for a in res["attacks"]] == [0.02, 0.1]
    assert all("per_example" not in a and a["steps"] == 2 for a in res["attacks"])
    assert len(per.read_text().splitlines()) == 24
    assert main(["eval", str(d), "--data-dir", str(data_dir), "--attack", "pgd", "--eps", "0.1,x"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--eps" in err and len(err.splitlines()) == 1
