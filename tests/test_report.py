"""Report tables and the analysis CLI commands on tiny checkpoints and a toy data file."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from advviz.storage.checkpoint import save_checkpoint
from advviz.cli import main
from advviz.analysis.lm import LMConfig, LSTMLanguageModel, build_lm_tokenizer, save_lm
from advviz.analysis.report import build_report, render_markdown
from conftest import SENTENCES, make_tiny_rnn

ROWS = [(s, y) for s, y in zip(SENTENCES, [1, 0, 1, 0, 1, 0])] * 4  # 24 rows


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    data = root / "toy.tsv"
    data.write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in ROWS), encoding="utf-8")
    labels = {"name": str(data), "label_names": ["0", "1"]}
    a, b = root / "a", root / "b"
    save_checkpoint(a, make_tiny_rnn("lstm", seed=0), {"data": labels, "train": {"arch": "lstm"}},
                    {"method": "baseline", "train_seconds": 1.5})
    save_checkpoint(b, make_tiny_rnn("lstm", seed=1), {"data": labels, "train": {"arch": "lstm"}},
                    {"method": "freelb", "train_seconds": 2.5})
    other = root / "agnews"
    save_checkpoint(other, make_tiny_rnn("lstm"), {"data": {"name": "x", "label_names": ["w", "s"]}}, {})
    tok = build_lm_tokenizer(SENTENCES, max_vocab=None, min_freq=1)
    save_lm(LSTMLanguageModel(tok, LMConfig(embedding_dim=4, hidden_size=4, dropout=0.0)), root / "lm", {})
    return {"data": str(data), "a": str(a), "b": str(b), "other": str(other), "lm": str(root / "lm"), "root": root}


def _train_size(toy) -> int:
    from advviz.data import load_dataset

    return len(load_dataset(toy["data"], "train"))


def test_build_report_tables(toy):
    out = toy["root"] / "rep" / "report.md"
    rep = build_report([toy["a"], toy["b"]], toy["data"], "train", attack="freelb", epsilons=[0.1, 0.5],
                       lm_dir=toy["lm"], ppl_attacks=["freelb"], out_md=out)
    assert rep["n"] == rep["split_size"] == _train_size(toy)
    r0 = rep["rows"][0]
    assert [a["epsilon"] for a in r0["attacks"]] == [0.1, 0.5]
    assert r0["method"] == "baseline" and r0["train_seconds"] == 1.5
    assert r0["parameters"] == sum(p.numel() for p in make_tiny_rnn("lstm").parameters())
    assert r0["perplexity"][0]["attack"] == "freelb" and r0["perplexity"][0]["original_perplexity"] > 1
    md = out.read_text()
    assert "CARL Table 5" in md and "CARL Table 4" in md and "SPGD Table 1" in md and "| a |" in md
    assert json.loads(out.with_suffix(".json").read_text())["rows"][1]["method"] == "freelb"


def test_render_markdown_without_lm():
    rep = {"title": "t", "dataset": "d", "split": "dev", "n": 2, "split_size": 2, "attack": "pgd",
           "epsilons": [0.1], "overrides": {}, "seed": 0,
           "rows": [{"name": "m", "arch": "lstm", "method": "baseline", "clean_accuracy": 0.5, "parameters": 1234,
                     "train_seconds": None, "attack_seconds": 0.25, "perplexity": [],
                     "attacks": [{"epsilon": 0.1, "accuracy": 0.25, "cosine": 0.9, "euclidean": 1.0,
                                  "flip_rate": 0.5}]}]}
    md = render_markdown(rep)
    assert "| m | lstm | baseline | 0.5000 | 1,234 | – | 0.2 |" in md
    assert "| m | 0.2500 | 0.5000 |" in md and "SPGD Table 1" not in md


def test_report_label_mismatch(toy):
    from advviz.errors import AdvvizError

    with pytest.raises(AdvvizError, match="labels"):
        build_report([toy["a"], toy["other"]], toy["data"], "train", attack="freelb", epsilons=[0.1])


def test_cli_compare_json(toy, capsys):
    assert main(["compare", toy["a"], toy["b"], "--dataset", toy["data"], "--split", "train", "--json",
                 "--n-boot", "50"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert {"accuracy_a", "accuracy_b", "t", "p", "mcnemar", "ci95"} <= set(r) and r["n"] == _train_size(toy)


def test_cli_compare_different_label_sets(toy, capsys):
    assert main(["compare", toy["a"], toy["other"], "--dataset", toy["data"], "--split", "train"]) == 2
    assert "different label sets" in capsys.readouterr().err


def test_cli_report_malformed_eps(toy, capsys):
    assert main(["report", toy["a"], "--dataset", toy["data"], "--split", "train", "--attack", "freelb",
                 "--eps", "0.1,abc", "--out", str(toy["root"] / "r.md")]) == 2
    assert "--eps" in capsys.readouterr().err


def test_cli_project_n_larger_than_split(toy, capsys, tmp_path):
    out = tmp_path / "p.csv"
    assert main(["project", toy["a"], "--dataset", toy["data"], "--split", "train", "--n", "1000",
                 "--attack", "freelb", "--reducer", "pca", "--out", str(out), "--no-cache", "--json"]) == 0
    cap = capsys.readouterr()
    n = _train_size(toy)
    assert "asked for 1000 examples" in cap.err and f"has {n}; using all {n}" in cap.err
    df = pd.read_csv(out)
    assert len(df) == 2 * n and {"x", "y", "label", "pred", "kind", "pair", "text"} <= set(df.columns)
    m = json.loads((tmp_path / "p.metrics.json").read_text())
    assert m["reducer"] == "pca" and "mean_distance_2d" in m


def test_cli_perplexity(toy, capsys):
    assert main(["perplexity", toy["a"], "--lm", toy["lm"], "--attack", "freelb", "--dataset", toy["data"],
                 "--split", "train", "--max-examples", "6", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    a = r["attacks"][0]
    assert r["n"] == 6 and a["gap"] == pytest.approx(a["adversarial_perplexity"] - a["original_perplexity"])


def test_cli_perplexity_rejects_classifier_as_lm(toy, capsys):
    assert main(["perplexity", toy["a"], "--lm", toy["b"], "--attack", "freelb", "--dataset", toy["data"]]) == 2
    assert "not a language model" in capsys.readouterr().err


def test_cli_unknown_attack(toy, capsys):
    assert main(["perplexity", toy["a"], "--lm", toy["lm"], "--attack", "nope", "--dataset", toy["data"]]) == 2
    assert "unknown attack" in capsys.readouterr().err


def test_parse_attack_spec():
    from advviz.errors import AdvvizError
    from advviz.analysis.report import parse_attack_spec

    assert parse_attack_spec("spgd") == ("spgd", {})
    assert parse_attack_spec("spgd@2.5") == ("spgd", {"epsilon": 2.5})
    with pytest.raises(AdvvizError, match="NAME@EPSILON"):
        parse_attack_spec("spgd@big")


def _row(name, seed, settings, acc, cos, dev=None):
    return {"name": name, "arch": "lstm", "method": name.split("-")[0], "trained_on": "d", "train_seed": seed,
            "settings": settings, "clean_accuracy": acc, "dev_accuracy_at_training": dev, "parameters": 10,
            "train_seconds": 1.0, "attack_seconds": 1.0, "perplexity": [],
            "attacks": [{"epsilon": 0.1, "accuracy": acc - 0.25, "cosine": cos, "euclidean": 1.0, "flip_rate": 0.5}]}


def test_seed_groups_average_runs_that_differ_only_by_seed():
    from advviz.analysis.report import seed_groups

    rows = [_row("carl-s0", 0, "A", 0.75, 0.9, 0.8), _row("carl-s1", 1, "A", 0.85, 0.7, 0.9),
            _row("carl-s2", 2, "A", 0.80, 0.8, None),  # a checkpoint without training metrics
            _row("freelb-s0", 0, "B", 0.6, 0.5),  # one seed: no group
            _row("carl-other-lr", 0, "C", 0.1, 0.1)]  # different settings: not averaged with A
    [g] = seed_groups(rows)
    assert g["method"] == "carl" and g["seeds"] == [0, 1, 2] and g["checkpoints"] == ["carl-s0", "carl-s1", "carl-s2"]
    assert g["clean_accuracy"]["mean"] == pytest.approx(0.80) and g["clean_accuracy"]["std"] == pytest.approx(0.05)
    assert g["dev_accuracy_at_training"]["mean"] == pytest.approx(0.85)  # the None is left out
    a = g["attacks"][0]
    assert a["epsilon"] == 0.1 and a["accuracy"]["mean"] == pytest.approx(0.55)
    assert a["cosine"]["mean"] == pytest.approx(0.8) and a["cosine"]["std"] == pytest.approx(0.1)
    rep = {"title": "t", "dataset": "d", "split": "dev", "n": 2, "split_size": 2, "attack": "pgd",
           "epsilons": [0.1], "overrides": {}, "seed": 0, "rows": rows, "seed_groups": [g]}
    md = render_markdown(rep)
    assert "over training seeds" in md and "| lstm | carl | 0, 1, 2 | 0.8500 ± 0.0707 | 0.8000 ± 0.0500 |" in md


def test_report_groups_real_checkpoints_by_settings(toy, tmp_path):
    """Two saved runs whose configs differ only in the seed (and --out) form one group."""
    labels = {"name": toy["data"], "label_names": ["0", "1"]}
    dirs = []
    for seed in (0, 1):
        d = tmp_path / f"m-s{seed}"
        save_checkpoint(d, make_tiny_rnn("lstm", seed=seed),
                        {"data": labels, "train": {"arch": "lstm", "seed": seed, "out": str(d), "lr": 1e-3},
                         "method": {"name": "baseline"}}, {"method": "baseline", "dev_accuracy": 0.5 + seed / 10})
        dirs.append(str(d))
    rep = build_report(dirs + [toy["a"]], toy["data"], "train", attack="freelb", epsilons=[0.1])
    [g] = rep["seed_groups"]
    assert g["checkpoints"] == ["m-s0", "m-s1"] and g["dev_accuracy_at_training"]["mean"] == pytest.approx(0.55)


def test_seed_groups_of_one_method_name_the_settings_that_tell_them_apart():
    """An ablation: three CARL groups that differ in one setting each must not all read "carl"."""
    from advviz.analysis.report import seed_groups

    def settings(**method):
        return json.dumps({"train": {"epochs": 3}, "method": {"name": "carl", "tau": 0.07, "carl_start": "33%",
                                                             **method}}, sort_keys=True)

    rows = [_row(f"carl-{v}-s{s}", s, settings(**kw), 0.7 + s / 100, 0.9)
            for v, kw in (("default", {}), ("tau", {"tau": 0.5}), ("late", {"carl_start": "67%"})) for s in (0, 1)]
    rows += [_row(f"freelb-s{s}", s, json.dumps({"method": {"name": "freelb"}}), 0.75, 0.4) for s in (0, 1)]
    groups = seed_groups(rows)
    assert [g["differs"] for g in groups] == [{"method.carl_start": "33%", "method.tau": 0.07},
                                              {"method.carl_start": "33%", "method.tau": 0.5},
                                              {"method.carl_start": "67%", "method.tau": 0.07}, {}]
    rep = {"title": "t", "dataset": "d", "split": "dev", "n": 2, "split_size": 2, "attack": "pgd",
           "epsilons": [0.1], "overrides": {}, "seed": 0, "rows": rows, "seed_groups": groups}
    md = render_markdown(rep)
    assert "| lstm | carl (carl_start 67%, tau 0.07) | 0, 1 |" in md and "| lstm | freelb | 0, 1 |" in md


def test_preset_paper_reaches_every_attack_of_inspect_and_report(toy, capsys, monkeypatch):
    """``--preset paper`` is one rule (``attacks.resolved_overrides``) for every command that attacks:
    inspect attacks at the paper's SPGD ε 25 (the lstm family preset says 2), and so do the report's
    perplexity attacks, which used the family preset whatever --preset said."""
    for preset, eps in (("family", 2.0), ("paper", 25.0)):
        assert main(["inspect", toy["a"], "--attack", "spgd", "--k", "2", "--preset", preset, "--json",
                     "--text", SENTENCES[0]]) == 0
        assert json.loads(capsys.readouterr().out)["attack"]["epsilon"] == eps

    import advviz.analysis.report as report

    seen = []
    real = report.adversarial_perplexity

    def spy(model, lm, texts, labels, name, overrides, *a, **k):
        seen.append((name, dict(overrides or {})))
        return real(model, lm, texts, labels, name, overrides, *a, **k)

    monkeypatch.setattr(report, "adversarial_perplexity", spy)
    for preset in ("family", "paper"):
        assert main(["report", toy["a"], "--dataset", toy["data"], "--split", "train", "--attack", "freelb",
                     "--eps", "0.1", "--lm", toy["lm"], "--ppl-attacks", "spgd", "--k", "2", "--max-examples", "4",
                     "--preset", preset, "--out", str(toy["root"] / f"preset-{preset}.md"), "--json"]) == 0
    capsys.readouterr()
    assert [(n, o.get("epsilon")) for n, o in seen] == [("spgd", None), ("spgd", 25.0)]
