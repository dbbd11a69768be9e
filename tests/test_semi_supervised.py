"""Semi-supervised data and adversarial augmentation on real data (issue 14): --labeled-fraction
(stratified, seeded, recorded), --unlabeled (any text column, no label needed), `advviz augment`
(its TSV columns) and `advviz train --augment` (repeatable), the new attacks on the analysis
commands, and one line (exit 2) for each user error."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from advviz.cli import build_parser, main
from advviz.config import given, to_argv
from advviz.data import TextDataset, labeled_split, load_unlabeled, read_augment
from advviz.errors import AdvvizError
from advviz.train import TrainConfig, UnlabeledStream

TINY = ["--dataset", "sst2-sent", "--arch", "lstm", "--hidden-size", "16", "--max-eval", "60", "--quiet"]


def _one_line_error(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


# -- data ------------------------------------------------------------------------------------------


def _ds(n_pos=60, n_neg=40):
    texts = [f"text {i}" for i in range(n_pos + n_neg)]
    labels = [1] * n_pos + [0] * n_neg
    return TextDataset("toy", "train", texts, labels, ["neg", "pos"])


def test_labeled_split_is_stratified_and_seeded():
    ds = _ds()
    lab, rest, info = labeled_split(ds, 0.1, seed=0)
    assert sorted(lab.labels) == [0] * 4 + [1] * 6  # 10 % of each class
    assert len(rest) == 90 and set(rest) | set(lab.texts) == set(ds.texts) and not set(rest) & set(lab.texts)
    assert info["labeled"] == 10 and info["unlabeled"] == 90 and info["labeled_per_class"] == {"neg": 4, "pos": 6}
    assert labeled_split(ds, 0.1, seed=0)[0].texts == lab.texts  # seeded
    assert labeled_split(ds, 0.1, seed=1)[0].texts != lab.texts
    assert labeled_split(ds, 1.0, seed=0)[0] is ds


def test_labeled_split_refuses_a_fraction_that_leaves_a_class_unlabelled():
    with pytest.raises(AdvvizError, match="no labelled example of class neg"):
        labeled_split(_ds(n_pos=50, n_neg=2), 0.1, seed=0)


def test_unlabeled_files_need_no_label(tmp_path, data_dir):
    (tmp_path / "u.txt").write_text("first text\n\nsecond one\n", encoding="utf-8")
    (tmp_path / "u.tsv").write_text("sentence\tsource\nhello there\tweb\n\t\nbye now\tweb\n", encoding="utf-8")
    (tmp_path / "one.csv").write_text("whatever\nonly column\n", encoding="utf-8")
    assert load_unlabeled(str(tmp_path / "u.txt"))[0] == ["first text", "second one"]
    assert load_unlabeled(str(tmp_path / "u.tsv"))[0] == ["hello there", "bye now"]
    assert load_unlabeled(str(tmp_path / "one.csv"))[0] == ["only column"]
    texts, info = load_unlabeled("mr", data_dir)
    assert len(texts) > 1000 and info["name"] == "mr"
    (tmp_path / "no.tsv").write_text("a\tb\n1\t2\n", encoding="utf-8")
    with pytest.raises(AdvvizError, match="no text column"):
        load_unlabeled(str(tmp_path / "no.tsv"))
    with pytest.raises(AdvvizError, match="no such file"):
        load_unlabeled(str(tmp_path / "missing.tsv"))


def test_augment_rows_are_validated_as_labels_are(tmp_path):
    train = _ds()
    (tmp_path / "ok.tsv").write_text("text\tlabel\tsource_index\tattack\tchanged_tokens\nnew text\t1\t3\tspgd\t2\n",
                                     encoding="utf-8")
    rows = read_augment(tmp_path / "ok.tsv", train)
    assert rows.texts == ["new text"] and rows.labels == [1] and rows.label_names == ["neg", "pos"]
    (tmp_path / "missing.tsv").write_text("text\tlabel\nnew text\t\n", encoding="utf-8")
    with pytest.raises(AdvvizError, match="line 2: empty label"):
        read_augment(tmp_path / "missing.tsv", train)
    (tmp_path / "range.tsv").write_text("text\tlabel\nnew text\t7\n", encoding="utf-8")
    with pytest.raises(AdvvizError, match="out of range"):
        read_augment(tmp_path / "range.tsv", train)
    named = TextDataset("toy", "train", ["a", "b"], [0, 1], ["neg", "pos"], label_mapping={"neg": 0, "pos": 1})
    (tmp_path / "names.tsv").write_text("text\tlabel\nx\tpos\ny\tneg\n", encoding="utf-8")
    assert read_augment(tmp_path / "names.tsv", named).labels == [1, 0]
    (tmp_path / "other.tsv").write_text("text\tlabel\nx\tmaybe\n", encoding="utf-8")
    with pytest.raises(AdvvizError, match=r"line 2: label 'maybe' is not one of the training set's labels \(neg, pos\)"):
        read_augment(tmp_path / "other.tsv", named)


def test_unlabeled_stream_depends_on_the_step_only():
    a, b = UnlabeledStream(10, 4, seed=3), UnlabeledStream(10, 4, seed=3)
    seq = [a.indices(s) for s in range(6)]
    assert [b.indices(s) for s in (5, 2, 0)] == [seq[5], seq[2], seq[0]]  # any order, same rows
    flat = sum(seq[:5], [])[:20]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))  # each pass a permutation
    ranks = [UnlabeledStream(10, 2, 3, rank=r, world=2).indices(1) for r in (0, 1)]
    assert ranks[0] + ranks[1] == seq[1]


def test_augment_flag_is_repeatable_and_round_trips(tmp_path):
    argv = ["train", "--augment", "a.tsv", "--augment", "b.tsv", "--labeled-fraction", "0.1", "--unlabeled", "mr",
            "--method", "vat"]
    args = build_parser(argv).parse_args(argv)
    cfg = TrainConfig(**given(args, TrainConfig))
    assert cfg.augment == ("a.tsv", "b.tsv") and cfg.labeled_fraction == 0.1 and cfg.unlabeled == "mr"
    again = ["train", *to_argv(TrainConfig, given(args, TrainConfig))]
    assert TrainConfig(**given(build_parser(again).parse_args(again), TrainConfig)) == cfg


@pytest.mark.parametrize("value", ["0", "1.5", "-0.1", "nan"])
def test_labeled_fraction_out_of_range_is_one_line(capsys, value):
    _one_line_error(capsys, ["train", "--labeled-fraction", value], "--labeled-fraction must be in (0, 1]")


# -- training on real data ------------------------------------------------------------------------


def _config(out: Path) -> dict:
    return json.loads((out / "config.json").read_text())


def test_labeled_fraction_is_recorded_and_supervised_methods_see_only_labels(tmp_path, data_dir):
    out = tmp_path / "base"
    assert main(["train", *TINY, "--max-train", "300", "--max-steps", "2", "--labeled-fraction", "0.2",
                 "--out", str(out)]) == 0
    data = _config(out)["data"]
    split = data["semi_supervised"]["labeled_split"]
    assert data["train_examples"] == 60 and split["labeled"] == 60 and split["unlabeled"] == 240
    assert split["seed"] == 0 and split["method"] == "stratified" and split["labeled_fraction"] == 0.2
    assert data["unlabeled_examples"] == 0  # the baseline trains on the labelled part only
    assert _config(out)["train"]["labeled_fraction"] == 0.2


def test_label_free_methods_get_the_unlabeled_text(tmp_path, data_dir):
    unl = tmp_path / "more.txt"
    unl.write_text("an unlabeled sentence\nand another one\n", encoding="utf-8")
    out = tmp_path / "vat"
    assert main(["train", *TINY, "--method", "vat", "--max-train", "200", "--max-steps", "2",
                 "--labeled-fraction", "0.5", "--unlabeled", str(unl), "--out", str(out)]) == 0
    cfg = _config(out)
    semi = cfg["data"]["semi_supervised"]
    assert cfg["data"]["unlabeled_examples"] == 100 + 2 and semi["unlabeled_source"]["texts"] == 2
    assert cfg["train"]["unlabeled"] == str(unl)


def test_a_file_without_labels_is_refused_as_data_but_taken_as_unlabeled(tmp_path, data_dir, capsys):
    f = tmp_path / "texts.tsv"
    f.write_text("text\nsome words here\nmore words there\n", encoding="utf-8")
    _one_line_error(capsys, ["train", *TINY[2:], "--dataset", str(f), "--out", str(tmp_path / "x")], "label")
    _one_line_error(capsys, ["train", *TINY, "--method", "spgd", "--unlabeled", str(f), "--out", str(tmp_path / "y")],
                    "--unlabeled is text for label-free methods")
    _one_line_error(capsys, ["train", *TINY, "--method", "uae", "--unlabeled", str(tmp_path / "nope.txt"),
                             "--out", str(tmp_path / "z")], "no such file")


# -- advviz augment and train --augment ----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("aug")
    for method in ("baseline", "rar"):
        assert main(["train", *TINY, "--method", method, "--max-train", "300", "--max-steps", "4",
                     "--out", str(root / method)]) == 0
    return root


def _read_tsv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def test_augment_writes_moved_to_text_with_its_columns(tiny_ckpt, tmp_path, data_dir):
    out = tmp_path / "aug.tsv"
    assert main(["augment", str(tiny_ckpt / "baseline"), "--attack", "spgd", "--max-examples", "30",
                 "--out", str(out), "--quiet"]) == 0
    rows = _read_tsv(out)
    assert rows[0] == ["text", "label", "source_index", "attack", "changed_tokens"]
    with gzip.open(data_dir / "sst2_sent_train.tsv.gz", "rt", encoding="utf-8") as f:
        train = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    assert len(rows) > 1
    from advviz import load

    tok = load(tiny_ckpt / "baseline").classifier.tokenizer
    for text, label, idx, attack, changed in rows[1:]:
        src_text, src_label = train[int(idx)][0].strip(), train[int(idx)][1]
        assert attack == "spgd" and label == ["negative", "positive"][int(src_label)] and int(changed) >= 1
        a, b = text.split(), tok.tokenize(src_text)
        assert len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == int(changed)  # only moved tokens change


def test_augment_with_uae_and_rar_reconstructions_then_train_on_both(tiny_ckpt, tmp_path, data_dir, capsys):
    uae = tmp_path / "uae.tsv"
    assert main(["augment", str(tiny_ckpt / "baseline"), "--attack", "uae", "--token-share", "0.25",
                 "--max-examples", "20", "--out", str(uae), "--quiet"]) == 0
    rows = _read_tsv(uae)[1:]
    assert len(rows) == 20 and all(r[3] == "uae" for r in rows)
    rar = tmp_path / "rar.tsv"
    assert main(["augment", str(tiny_ckpt / "rar"), "--attack", "pgd", "--epsilon", "2", "--text-form",
                 "reconstructed", "--max-examples", "20", "--keep-unchanged", "--out", str(rar), "--quiet"]) == 0
    assert len(_read_tsv(rar)) == 21
    out = tmp_path / "retrained"
    assert main(["train", *TINY, "--max-train", "100", "--max-steps", "2", "--augment", str(uae), "--augment", str(rar),
                 "--out", str(out)]) == 0
    cfg = _config(out)
    assert cfg["data"]["train_examples"] == 100 + 20 + 20
    assert cfg["data"]["semi_supervised"]["augment"] == [{"file": str(uae), "rows": 20}, {"file": str(rar), "rows": 20}]
    assert cfg["train"]["augment"] == [str(uae), str(rar)]


def test_augment_user_errors_are_one_line(tiny_ckpt, tmp_path, capsys):
    base = str(tiny_ckpt / "baseline")
    _one_line_error(capsys, ["augment", base, "--out", str(tmp_path / "a.csv")], "give a .tsv file")
    _one_line_error(capsys, ["augment", base, "--attack", "baseline", "--out", str(tmp_path / "a.tsv")], "not an attack")
    _one_line_error(capsys, ["augment", base, "--text-form", "reconstructed", "--out", str(tmp_path / "a.tsv")],
                    "no RAR head")
    _one_line_error(capsys, ["augment", base, "--token-share", "0", "--out", str(tmp_path / "a.tsv")], "--token-share")
    (tmp_path / "d.tsv").mkdir()
    _one_line_error(capsys, ["augment", base, "--out", str(tmp_path / "d.tsv")], "is a directory")
    bad = tmp_path / "bad.tsv"
    bad.write_text("text\tlabel\nfine\t1\nno label here\t\n", encoding="utf-8")
    _one_line_error(capsys, ["train", *TINY, "--augment", str(bad), "--out", str(tmp_path / "r")], "line 3", "label")
    _one_line_error(capsys, ["train", *TINY, "--augment", str(tmp_path / "none.tsv"), "--out", str(tmp_path / "r")],
                    "no such file")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("attack", ["vat", "uae"])
def test_new_attacks_work_in_the_analysis_commands(tiny_ckpt, tmp_path, capsys, attack):
    base = str(tiny_ckpt / "baseline")
    assert main(["inspect", base, "--text", "a charming and often affecting journey", "--attack", attack, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["attack"]["name"] == attack and any(t["norm"] > 0 for t in r["tokens"])
    assert main(["eval", base, "--attack", attack, "--max-examples", "16", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["attacks"][0]["name"] == attack and res["attacks"][0]["n"] == 16
    assert main(["reconstruct", str(tiny_ckpt / "rar"), "--attack", attack, "--max-examples", "8", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["project", base, "--attack", attack, "--n", "20", "--reducer", "pca", "--no-cache",
                 "--out", str(tmp_path / "p.csv"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["table"] == str(tmp_path / "p.csv")


@pytest.mark.slow
def test_uae_semi_supervised_run_resumes_bit_identically(tmp_path, data_dir):
    """SIGKILL a uae run with unlabeled rows, resume: the statistics network, its Adam moments, the
    generator and the unlabeled stream continue where they were (weights equal the uninterrupted run's)."""
    import os
    import signal
    import subprocess

    from test_resume import _args, _assert_same, _final, _run_until

    extra = ["--labeled-fraction", "0.5", "--epsilon", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ref = tmp_path / "ref"
    subprocess.run(_args(data_dir, ref, "uae", extra), check=True, env=env)
    out = tmp_path / "run"
    assert _run_until(_args(data_dir, out, "uae", extra), out, 7, signal.SIGKILL) == -signal.SIGKILL
    subprocess.run(_args(data_dir, out, "uae", [*extra, "--resume"]), check=True, env=env)
    _assert_same(_final(out), _final(ref))


def test_registry_row_says_what_a_run_trained_on_beyond_its_labels(tmp_path, data_dir):
    """The Models table must not show a 10 %-label run or an augmented run as a plain baseline."""
    from advviz import registry

    common = ["--dataset", "sst2-sent", "--arch", "lstm", "--max-train", "100", "--max-eval", "20", "--epochs", "1",
              "--hidden-size", "8", "--quiet", "--data-dir", str(data_dir)]
    aug = tmp_path / "aug.tsv"
    aug.write_text("text\tlabel\tsource_index\tattack\tchanged_tokens\na fine film\t1\t0\tspgd\t1\n"
                   "a dull film\t0\t1\tspgd\t1\n")
    assert main(["train", *common, "--method", "vat", "--labeled-fraction", "0.5", "--out", str(tmp_path / "semi")]) == 0
    assert main(["train", *common, "--method", "baseline", "--augment", str(aug), "--out", str(tmp_path / "aug")]) == 0
    assert main(["train", *common, "--method", "baseline", "--out", str(tmp_path / "plain")]) == 0
    rows = {r["name"]: r["training_data"] for r in registry.scan(tmp_path)}
    assert rows == {"semi": "50% labels + 50 unlabeled", "aug": "+2 augmented", "plain": ""}
    assert registry.training_data({"split_info": {"labeled_fraction": "ten"}, "unlabeled_examples": True}) == ""
