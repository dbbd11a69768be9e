"""Hostile labels, round 3 (issue 24: "a run silently trains a different task"): every case is one
line on stderr and a non-zero exit, or the documented result; augment labels keep their names'
meaning. Named sets are tiny copies in a temporary data directory (``sst2_dir``), models the
4-unit BiGRU of tests/test_hostile_cli.py: no real data, seconds in all."""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path

import pytest

from advviz.cli import main
from advviz.data import load_dataset, load_splits, read_augment
from advviz.errors import AdvvizError

from test_hostile_cli import TINY, _toy_rows, one_line


def _named_dir(root: Path, files: dict[str, str], rows) -> Path:
    """A data directory holding ``files`` (split -> file name of a named set), each a gzip TSV of
    ``rows``: (text, label) pairs."""
    root.mkdir(exist_ok=True)
    body = "text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows)
    for name in files.values():
        (root / name).write_bytes(gzip.compress(body.encode()))
    return root


def _toy_pairs(n: int = 60, labels=(0, 1)):
    return [tuple(line.split("\t")) for line in _toy_rows(n, labels).splitlines()[1:]]


SST2 = {"train": "sst2_sent_train.tsv.gz", "dev": "sst2_sent_dev.tsv.gz", "test": "sst2_sent_test.tsv.gz"}


@pytest.fixture
def sst2_dir(tmp_path) -> Path:
    """sst2-sent as its files are: integer labels, the names negative/positive from the registry."""
    return _named_dir(tmp_path / "data", SST2, _toy_pairs())


def _aug(path: Path, labels, kind="tsv") -> Path:
    if kind == "jsonl":
        path.write_text("".join(json.dumps({"text": f"augmented text {i}", "label": y}) + "\n"
                                for i, y in enumerate(labels)))
    else:
        path.write_text("text\tlabel\n" + "".join(f"augmented text {i}\t{y}\n" for i, y in enumerate(labels)))
    return path


def _sst2_train(sst2_dir):
    return load_dataset("sst2-sent", "train", str(sst2_dir))


def _train(dataset, out, *extra):
    return [str(a) for a in ["train", "--dataset", dataset, *TINY, "--out", out, *extra]]


def _config(d: Path) -> dict:
    return json.loads((d / "config.json").read_text())


# ------------------------------------------------------------------ --augment: the training set's names


def test_augment_rows_all_positive_are_positive(sst2_dir, tmp_path):
    """Before: the file's own labels were sorted, so a file of `positive` rows was class 0 (negative)."""
    train = _sst2_train(sst2_dir)
    assert read_augment(_aug(tmp_path / "a.tsv", ["positive"] * 3), train).labels == [1, 1, 1]
    assert read_augment(_aug(tmp_path / "b.tsv", ["negative", "positive"]), train).labels == [0, 1]
    assert read_augment(_aug(tmp_path / "c.tsv", [1, 0, 1]), train).labels == [1, 0, 1]  # ids, as the files write


def test_augment_float_ids_keep_their_meaning(sst2_dir, tmp_path):
    """Before: `1.0` was a name, sorted on its own: class 0 (negative)."""
    train = _sst2_train(sst2_dir)
    assert read_augment(_aug(tmp_path / "a.tsv", ["1.0", "1.0"]), train).labels == [1, 1]
    assert read_augment(_aug(tmp_path / "a.jsonl", [1.0, 0, "1"], "jsonl"), train).labels == [1, 0, 1]


AUGMENT_CASES = {
    # case: (labels in the file, what the one line says)
    "Positive/negative (inverted before)": (["Positive", "negative"],
                                            r"a\.tsv: line 2: label 'Positive' is not one of the training set's labels "
                                            r"\(negative, positive\); labels are matched exactly, case included \(did you "
                                            r"mean 'positive'\?\)"),
    "good/bad (accepted before)": (["good", "bad"],
                                   r"a\.tsv: line 2: label 'good' is not one of the training set's labels "
                                   r"\(negative, positive\)$"),
    "a third name (cross_entropy traceback before)": (["positive", "negative", "neutral"],
                                                      r"line 4: label 'neutral' is not one of the training set's labels"),
    "names and ids mixed": (["positive", "0"], r"the labels mix names and numbers \('positive' at line 2, 0 at line 3\)"),
    "id out of range": (["1", "2"], r"line 3: label 2 is out of range for the 2 classes 0\.\.1 \(negative, positive\)"),
    "1.5": (["1", "1.5"], r"line 3: label '1\.5' is a number but not an integer"),
}


@pytest.mark.parametrize("case", list(AUGMENT_CASES))
def test_augment_labels_outside_the_training_set_are_one_line(sst2_dir, tmp_path, capsys, case):
    labels, match = AUGMENT_CASES[case]
    aug = _aug(tmp_path / "a.tsv", labels)
    line = one_line(capsys, _train("sst2-sent", tmp_path / "out", "--data-dir", sst2_dir, "--augment", aug))
    assert re.search(match, line), line
    assert not (tmp_path / "out").exists()


def test_augment_file_of_names_for_a_names_training_set(tmp_path):
    """A training file of names: its ids are only their sorted order, so an augment file must use the
    names (a number is refused, not guessed)."""
    (tmp_path / "d.tsv").write_text(_toy_rows(40, ("neg", "pos")))
    train = load_dataset(str(tmp_path / "d.tsv"))
    assert read_augment(_aug(tmp_path / "a.tsv", ["pos", "neg"]), train).labels == [1, 0]
    with pytest.raises(AdvvizError, match=r"line 2: label 1 is a number, but the training set's labels are names "
                                          r"\(neg, pos\); write the name"):
        read_augment(_aug(tmp_path / "b.tsv", ["1", "0"]), train)


def test_augment_round_trip_keeps_meaning_and_refuses_another_label_set(sst2_dir, tmp_path, capsys):
    """`advviz augment` writes each row's label by name, so `train --augment` reads the same classes
    back; on a training set with other labels (subj) the file is refused instead of read by position
    (before: sst2-sent's 0/1 became subjective/objective)."""
    assert main(_train("sst2-sent", tmp_path / "m", "--data-dir", sst2_dir)) == 0
    aug = tmp_path / "aug.tsv"
    assert main(["augment", str(tmp_path / "m"), "--data-dir", str(sst2_dir), "--attack", "pgd", "--keep-unchanged",
                 "--max-examples", "12", "--out", str(aug), "--quiet"]) == 0
    capsys.readouterr()
    with open(aug, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    train = _sst2_train(sst2_dir)
    assert {r["label"] for r in rows} == {"negative", "positive"}
    assert [["negative", "positive"].index(r["label"]) for r in rows] == \
        [train.labels[int(r["source_index"])] for r in rows]
    assert read_augment(aug, train).labels == [train.labels[int(r["source_index"])] for r in rows]
    assert main(_train("sst2-sent", tmp_path / "m2", "--data-dir", sst2_dir, "--augment", aug)) == 0
    subj = _named_dir(tmp_path / "subj", {"train": "subj.tsv.gz"}, _toy_pairs())
    line = one_line(capsys, _train("subj", tmp_path / "m3", "--data-dir", subj, "--augment", aug))
    assert "label 'negative' is not one of the training set's labels (subjective, objective)" in line


def test_textattack_rows_write_the_label_name(sst2_dir, tmp_path):
    """`eval --adversarial-csv` rows (analysis/discrete.py) write names too, as `advviz augment` does."""
    from advviz import load
    from advviz.analysis.discrete import adversarial_rows

    assert main(_train("sst2-sent", tmp_path / "m", "--data-dir", sst2_dir)) == 0
    per = [{"result": "succeeded", "index": i, "label": y, "adversarial_text": f"t {i}", "changed_words": ["t"]}
           for i, y in enumerate([1, 0])]
    rows = adversarial_rows(load(tmp_path / "m"), per, "textattack:deepwordbug")
    assert [r["label"] for r in rows] == ["positive", "negative"]


def test_augment_round_trip_on_a_file_of_names(tmp_path, capsys):
    (tmp_path / "d.tsv").write_text(_toy_rows(40, ("neg", "pos")))
    assert main(_train(tmp_path / "d.tsv", tmp_path / "m")) == 0
    aug = tmp_path / "aug.tsv"
    assert main(["augment", str(tmp_path / "m"), "--attack", "pgd", "--keep-unchanged", "--max-examples", "8",
                 "--out", str(aug), "--quiet"]) == 0
    train = load_dataset(str(tmp_path / "d.tsv"))
    with open(aug, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [r["label"] for r in rows] == [train.label_names[train.labels[int(r["source_index"])]] for r in rows]
    assert main(_train(tmp_path / "d.tsv", tmp_path / "m2", "--augment", aug)) == 0


# ------------------------------------------------------------------ numbers are numbers


def test_jsonl_1_and_1_0_are_one_class(tmp_path):
    """Before: 1, 1.0, 0, 0.0 were four names, four classes."""
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps({"text": f"t{i}", "label": [1, 1.0, 0, 0.0][i % 4]}) + "\n" for i in range(40)))
    train = load_splits(str(p))["train"]
    assert train.label_names == ["0", "1"] and train.label_mapping is None
    assert sorted(set(train.labels)) == [0, 1]


def test_number_spellings_are_one_number(tmp_path):
    p = tmp_path / "d.tsv"
    spellings = ["1", "1.0", "+1", " 1 ", "1e0", "01", "0", "0.0", "-0", "0e3"]
    p.write_text("text\tlabel\n" + "".join(f"t{i}\t{spellings[i % 10]}\n" for i in range(40)))
    assert load_splits(str(p))["train"].label_names == ["0", "1"]


def test_pos_1_neg_0_tsv_is_refused_with_one_line(tmp_path, capsys):
    """Before: four classes, no warning."""
    (tmp_path / "d.tsv").write_text(_toy_rows(40, ("pos", "1", "neg", "0")))
    line = one_line(capsys, _train(tmp_path / "d.tsv", tmp_path / "out"))
    assert "d.tsv: the labels mix names and numbers ('pos' at line 2, 1 at line 3); write them all one way, " \
           "or say what each means with --label-map" in line
    assert not (tmp_path / "out").exists()


NUMBER_CASES = {
    "1.5 in a TSV": ("d.tsv", "text\tlabel\n" + "a\t0\nb\t1\n" * 5 + "c\t1.5\n", r"line 12: label '1\.5' is a number but not an integer"),
    "JSON 1.5": ("d.jsonl", '{"text": "a", "label": 0}\n{"text": "b", "label": 1.5}\n', r"line 2: label 1\.5 is a number but not an integer"),
    "JSON true": ("d.jsonl", '{"text": "a", "label": 0}\n{"text": "b", "label": true}\n', r"line 2: label true is a boolean"),
    "JSON NaN": ("d.jsonl", '{"text": "a", "label": 0}\n{"text": "b", "label": NaN}\n', r"line 2: label nan is a number but not an integer"),
    "JSON integer of 5000 digits": ("d.jsonl", '{"text": "a", "label": 0}\n{"text": "b", "label": ' + "7" * 5000 + "}\n",
                                    r"d\.jsonl: line 2: .*4300 digits"),
    "label 1e999999999": ("d.tsv", "text\tlabel\na\t0\nb\t1e999999999\n", r"line 3: label '1e999999999' is too large"),
    "NaN among numbers (pandas)": ("d.csv", "text,label\na,1.0\nb,0.0\nc,nan\n", r"mix names and numbers \('nan' at line 4, 1 at line 2\)"),
}


@pytest.mark.parametrize("case", list(NUMBER_CASES))
def test_numbers_that_are_not_class_ids_are_one_line(tmp_path, case):
    name, content, match = NUMBER_CASES[case]
    (tmp_path / name).write_text(content)
    with pytest.raises(AdvvizError, match=match) as e:
        load_splits(str(tmp_path / name))
    assert "\n" not in str(e.value) and len(str(e.value)) < 400


# ------------------------------------------------------------------ --label-map


def test_label_map_trains_two_classes_is_recorded_and_eval_reads_the_same(tmp_path, capsys):
    (tmp_path / "d.tsv").write_text(_toy_rows(40, ("pos", "1", "neg", "0")))
    assert main(_train(tmp_path / "d.tsv", tmp_path / "m", "--label-map", "pos=1,neg=0")) == 0
    cfg = _config(tmp_path / "m")
    assert cfg["data"]["label_names"] == ["0", "1"] and cfg["data"]["label_map"] == {"pos": 1, "neg": 0}
    assert cfg["train"]["label_map"] == "pos=1,neg=0"
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "m"), "--split", "test", "--json"]) == 0  # the recorded map is used
    assert json.loads(capsys.readouterr().out)["n"] > 0


def test_label_map_as_json_file_and_its_errors(tmp_path, capsys):
    from advviz.data import parse_label_map

    (tmp_path / "m.json").write_text('{"pos": 1, "neg": "0", "1.0": 1}')
    assert parse_label_map(str(tmp_path / "m.json")) == {"pos": 1, "neg": 0, 1: 1}
    assert parse_label_map("-1=0, 1=1") == {-1: 0, 1: 1}
    (tmp_path / "d.tsv").write_text(_toy_rows(40, ("-1", "1")))
    assert load_splits(str(tmp_path / "d.tsv"), label_map="-1=0")["train"].label_names == ["0", "1"]
    bad = {"pos": "no such file, and not FROM=TO pairs", "pos=1,,neg=0": "'' is not FROM=TO",
           "1=0,1.0=1": "label 1 is mapped twice", "pos=1.5": "not an integer"}
    for spec, msg in bad.items():
        assert msg in one_line(capsys, _train(tmp_path / "d.tsv", tmp_path / "out", "--label-map", spec))
    (tmp_path / "l.json").write_text("[1, 2]")
    assert "one JSON object" in one_line(capsys, _train(tmp_path / "d.tsv", tmp_path / "out", "--label-map",
                                                        tmp_path / "l.json"))
    (tmp_path / "d2.tsv").write_text(_toy_rows(40, ("pos", "1", "neg", "0")))
    line = one_line(capsys, _train(tmp_path / "d2.tsv", tmp_path / "out", "--label-map", "pos=1"))
    assert "--label-map leaves them mixed" in line
    assert not (tmp_path / "out").exists()


def test_label_map_applies_to_augment_files(sst2_dir, tmp_path):
    train = _sst2_train(sst2_dir)
    aug = _aug(tmp_path / "a.tsv", ["pos", "neg", "positive"])
    assert read_augment(aug, train, "pos=positive,neg=negative").labels == [1, 0, 1]


# ------------------------------------------------------------------ more cases of our own


OWN_CASES = {
    "Positive and positive in one file": ("d.tsv", _toy_rows(40, ("Positive", "positive", "negative")),
                                          r"labels 'Positive' \(line 2\) and 'positive' \(line 3\) differ only in case"),
    "full-width name beside its ASCII twin": ("d.tsv", _toy_rows(40, ("pos", "ｐｏｓ", "neg")),
                                              r"labels 'pos' \(line 2\) and 'ｐｏｓ' \(line 3\) differ only in case or Unicode"),
    "a zero-width space in a name": ("d.tsv", _toy_rows(40, ("pos", "pos\u200b", "neg")),
                                     r"line 3: label 'pos\\u200b' holds the invisible character U\+200B"),
    "a tab inside a quoted CSV label": ("d.csv", "text,label\n" + "a,pos\nb,neg\n" * 5 + 'c,"p\tos"\n',
                                        r"line 12: label 'p\\tos' holds the invisible character U\+0009"),
}


@pytest.mark.parametrize("case", list(OWN_CASES))
def test_names_that_would_split_a_class_are_one_line(tmp_path, case):
    name, content, match = OWN_CASES[case]
    (tmp_path / name).write_text(content)
    with pytest.raises(AdvvizError, match=match):
        load_splits(str(tmp_path / name))


@pytest.mark.parametrize("labels, match", [
    (("negative", "positive", "neutral"), r"mr\.tsv\.gz: line 4: label 'neutral' is not one of mr's labels \(negative, positive\)"),
    (("neg", "pos"), r"line 2: label 'neg' is not one of mr's labels"),
])
def test_named_set_files_holding_other_names_are_refused(tmp_path, capsys, labels, match):
    """Before: a named set's file of names was sorted on its own: `neutral` became a third class of
    `mr`, and neg/pos replaced the set's negative/positive."""
    d = _named_dir(tmp_path / "data", {"train": "mr.tsv.gz"}, _toy_pairs(60, labels))
    with pytest.raises(AdvvizError, match=match):
        load_splits("mr", str(d))
    assert "is not one of mr's labels" in one_line(capsys, _train("mr", tmp_path / "out", "--data-dir", d))


def test_named_set_splits_read_against_the_sets_names(tmp_path):
    """agnews whose test file holds names: read in the registry's order (World=0), as train's ids are."""
    from advviz.data import NAMED_DATASETS

    names = NAMED_DATASETS["agnews"].label_names
    d = _named_dir(tmp_path / "data", {"train": "agnews_trainsubset10k.tsv.gz"}, _toy_pairs(40, (0, 1, 2, 3)))
    _named_dir(d, {"test": "agnews_test.tsv.gz"}, _toy_pairs(40, names))
    splits = load_splits("agnews", str(d))
    assert splits["test"].label_names == splits["train"].label_names == list(names)
    assert splits["test"].labels[:4] == [0, 1, 2, 3]


def test_eval_reads_the_label_column_the_model_trained_on(tmp_path):
    """Before: `eval` auto-detected `label` although the model trained on `--label-col sentiment`
    (here the opposite class): another task, scored silently."""
    from advviz import load

    rows = "".join(f"the film was {['dull', 'fine'][i % 2]} {i}\t{1 - i % 2}\t{i % 2}\n" for i in range(40))
    (tmp_path / "d.tsv").write_text("text\tlabel\tsentiment\n" + rows)
    assert main(_train(tmp_path / "d.tsv", tmp_path / "m", "--label-col", "sentiment")) == 0
    want = load_dataset(str(tmp_path / "d.tsv"), "dev", label_col="sentiment").labels
    assert load(tmp_path / "m").examples(split="dev").labels == want
    assert load(tmp_path / "m").examples(f"{tmp_path}/./d.tsv", "dev").labels == want  # the same file


def test_eval_of_a_names_model_on_integer_labels_is_refused(tmp_path, capsys):
    """A model trained on the names neg/pos has ids that are only their sorted order: before, a file
    of 0/1 was scored by that order; now one line (a named set's ids, e.g. sst2-sent's, still count)."""
    (tmp_path / "d.tsv").write_text(_toy_rows(40, ("neg", "pos")))
    assert main(_train(tmp_path / "d.tsv", tmp_path / "m")) == 0
    (tmp_path / "ids.tsv").write_text(_toy_rows(40, (0, 1)))
    line = one_line(capsys, ["eval", tmp_path / "m", "--dataset", tmp_path / "ids.tsv"])
    assert "trained on the label names ['neg', 'pos'], whose ids are only their sorted order" in line


def test_report_reads_the_label_column_the_model_trained_on(tmp_path):
    """Before: `report` auto-detected the `label` column (here other names) and refused the model's own data."""
    from advviz.analysis.report import build_report

    rows = "".join(f"the film was {['dull', 'fine'][i % 2]} {i}\t{'xy'[i % 3 == 0]}\t{i % 2}\n" for i in range(40))
    (tmp_path / "d.tsv").write_text("text\tlabel\tsentiment\n" + rows)
    assert main(_train(tmp_path / "d.tsv", tmp_path / "m", "--label-col", "sentiment")) == 0
    res = build_report([tmp_path / "m"], str(tmp_path / "d.tsv"), "test", epsilons=[0.01], ppl_attacks=())
    assert res["n"] == len(load_dataset(str(tmp_path / "d.tsv"), "test", label_col="sentiment")) > 0


@pytest.mark.parametrize("label_col", ["source_index", "text"])
def test_a_label_column_of_ids_or_texts_is_refused(tmp_path, capsys, label_col):
    """Before: `--label-col source_index` (0..N−1, every class present) or a text column trained an
    N-class model, silently."""
    rows = "".join(f"the film number {i} was {['dull', 'fine'][i % 2]}\t{i % 2}\t{i}\n" for i in range(40))
    (tmp_path / "d.tsv").write_text("text\tlabel\tsource_index\n" + rows)
    line = one_line(capsys, _train(tmp_path / "d.tsv", tmp_path / "out", "--label-col", label_col))
    assert f"40 classes for 40 examples (fewer than two a class): is '{label_col}' really the labels?" in line
    assert load_splits(str(tmp_path / "d.tsv"), label_col="label")["train"].num_labels == 2
