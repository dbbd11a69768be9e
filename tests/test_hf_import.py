"""``advviz import`` and ``advviz train --init-from``: a user's own Hugging Face classifier, as it is.

Tiny random BERT, RoBERTa, DistilBERT and ALBERT ``*ForSequenceClassification`` models with real
tokenizers (tests/hf_models.py), saved with ``save_pretrained``: the imported checkpoint's
probabilities are transformers' own forward, every command runs on it, and what is not a
single-label sequence classifier is refused with one line, the source folder untouched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import advviz
from advviz.cli import main

import hf_models
from test_hostile_cli import one_line
from test_textattack import ta  # noqa: F401  (a fixture: skips without the textattack extra)

TEXTS = hf_models.SENTENCES + ["a film that is not good , not bad , but simply there"]


def folder_hash(d: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(d.rglob("*")):
        h.update(str(p.relative_to(d)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def toy_tsv(path: Path, names=("negative", "positive"), n: int = 40) -> Path:
    pos, neg = "good great fine lovely superb".split(), "bad awful dull boring poor".split()
    rows = [f"the film was {(pos if i % 2 else neg)[i % 5]} and fine\t{names[i % 2]}" for i in range(n)]
    path.write_text("text\tlabel\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """kind -> (source folder, its hash, imported checkpoint); plus the toy data set."""
    root = tmp_path_factory.mktemp("hf")
    out = {"toy": toy_tsv(root / "toy.tsv")}
    for kind in hf_models.KINDS:
        src = hf_models.save(kind, root / f"src-{kind}")
        before = folder_hash(src)
        assert main(["import", str(src), "--out", str(root / f"ck-{kind}"), "--dataset", str(out["toy"])]) == 0
        out[kind] = (src, before, root / f"ck-{kind}")
    return out


@pytest.mark.parametrize("kind", hf_models.KINDS)
def test_import_gives_transformers_own_probabilities(made, kind):
    src, before, ck = made[kind]
    m = advviz.load(ck)
    np.testing.assert_allclose(m.predict(TEXTS), hf_models.hf_probs(src, TEXTS), atol=1e-5, rtol=0)
    assert m.label_names == ["negative", "positive"]  # config.id2label
    assert m.config["method"] == {"name": "imported", "source": str(src.resolve())}
    assert m.config["model"]["family"] == "hf-seq" and m.config["model"]["hf_config"]["model_type"] == kind
    assert folder_hash(src) == before  # the source folder is never modified
    # the weights are the stock ones under "hf." (nothing dropped, nothing added)
    from transformers import AutoModelForSequenceClassification

    stock = AutoModelForSequenceClassification.from_pretrained(str(src)).state_dict()
    mine = load_file(str(ck / "model.safetensors"))
    assert {k[3:] for k in mine} == {k for k in stock if k in {k2[3:] for k2 in mine}}
    for k, v in mine.items():
        assert torch.equal(v, stock[k[3:]])


@pytest.mark.parametrize("kind", hf_models.KINDS)
def test_pooled_is_what_the_head_classifies_from(made, kind):
    """pooled = the input of the head's final Linear: that Linear applied to it gives the logits."""
    m = advviz.load(made[kind][2]).classifier
    b = m.tokenizer.batch(TEXTS[:3])
    with torch.no_grad():
        out = m(b["input_ids"], b["attention_mask"])
        torch.testing.assert_close(m._head(out.pooled), out.logits, atol=1e-6, rtol=0)
    assert out.tokens.shape[:2] == b["input_ids"].shape and out.pooled.shape == (3, m.hidden_size)
    # special tokens ([CLS]/<s>, [SEP]/</s>, padding) are never perturbed, words are (BPE, Unigram alike)
    mask = m.perturbable_mask(b["input_ids"], b["attention_mask"])
    special = torch.isin(b["input_ids"], torch.tensor(sorted(m.tokenizer.special_ids)))
    assert not (mask & special).any() and mask[0, 1] and not mask[0, 0]


@pytest.mark.parametrize("kind", hf_models.KINDS)
def test_inspect_words_and_pgd_run_on_each(made, kind, capsys):
    ck, toy = made[kind][2], made["toy"]
    assert main(["inspect", str(ck), "--text", "the film was good", "--attack", "pgd", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["tokens"] and all(t["norm"] >= 0 for t in rec["tokens"])
    assert main(["eval", str(ck), "--attack", "pgd", "--eps", "0.1", "--max-examples", "4", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["dataset"] == str(toy) and res["attacks"][0]["n"] == 4
    assert main(["words", str(ck), "--attack", "pgd", "--max-examples", "4", "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["n_words"] > 0


def test_label_names_differ_one_line_or_renamed(made, tmp_path, capsys):
    src = hf_models.save("bert", tmp_path / "generic", labels=None)  # LABEL_0, LABEL_1
    toy = made["toy"]
    assert main(["import", str(src), "--out", str(tmp_path / "g")]) == 0
    assert advviz.load(tmp_path / "g").label_names == ["LABEL_0", "LABEL_1"]  # kept
    line = one_line(capsys, ["eval", tmp_path / "g", "--dataset", toy])
    assert "['LABEL_0', 'LABEL_1']" in line and "['negative', 'positive']" in line
    assert main(["import", str(src), "--out", str(tmp_path / "n"), "--label-map",
                 "LABEL_0=negative,LABEL_1=positive"]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "n"), "--dataset", str(toy), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] > 0
    assert "no label 'POS'" in one_line(capsys, ["import", src, "--out", tmp_path / "x", "--label-map", "POS=positive"])
    line = one_line(capsys, ["train", "--init-from", src, "--dataset", toy, "--max-steps", "1", "--out", tmp_path / "t"])
    assert "['LABEL_0', 'LABEL_1']" in line and "['negative', 'positive']" in line


@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_init_from_keeps_the_head_at_step_0(made, kind, tmp_path, monkeypatch, capsys):
    import advviz.train as T

    src, _, ck = made[kind]
    seen = []
    real = T.train_one_step

    def spy(method, model, *a, **k):
        if not seen:
            seen.append({k2: v.detach().clone() for k2, v in model.hf.state_dict().items()})
        return real(method, model, *a, **k)

    monkeypatch.setattr(T, "train_one_step", spy)
    for start in (src, ck):  # a save_pretrained folder, or the imported checkpoint
        seen.clear()
        out = tmp_path / f"t-{start.name}"
        assert main(["train", "--init-from", str(start), "--dataset", str(made["toy"]), "--method", "spgd",
                     "--max-steps", "1", "--batch-size", "4", "--quiet", "--out", str(out)]) == 0
        stock = load_file(str(src / "model.safetensors"))
        for k, v in stock.items():  # every weight, the head's included, is the source's at step 0
            assert torch.equal(seen[0][k], v), k
        trained = advviz.load(out)
        assert trained.config["train"]["arch"] == kind and trained.config["model"]["family"] == "hf-seq"
        head = [k for k in stock if k.startswith("classifier")]
        assert any(not torch.equal(trained.classifier.hf.state_dict()[k], stock[k]) for k in head)  # it trained


def test_init_from_refuses_conflicting_flags(made, tmp_path, capsys):
    ck, toy = made["bert"][2], made["toy"]
    for flag in (["--arch", "lstm"], ["--max-vocab", "10"], ["--dropout", "0.2"]):
        line = one_line(capsys, ["train", "--init-from", ck, "--dataset", toy, *flag, "--out", tmp_path / "t"])
        assert flag[0] in line and "--init-from" in line
    assert not (tmp_path / "t").exists()


def test_init_from_an_lstm_refused(tmp_path, capsys):
    from advviz.storage.checkpoint import save_checkpoint
    from conftest import make_tiny_rnn

    save_checkpoint(tmp_path / "lstm", make_tiny_rnn(), {"data": {"name": "x", "label_names": ["a", "b"]}}, {})
    toy = toy_tsv(tmp_path / "toy.tsv")
    assert "lstm checkpoint" in one_line(capsys, ["train", "--init-from", tmp_path / "lstm", "--dataset", toy,
                                                  "--max-steps", "1", "--out", tmp_path / "t"])


def test_what_is_not_a_sequence_classifier_is_refused(tmp_path, capsys):
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    model, tok = hf_models.build("bert")
    cases = {}
    d = tmp_path / "automodel"
    BertModel(model.config).save_pretrained(str(d)), tok.save_pretrained(str(d))
    cases[d] = "holds a BertModel, not a sequence classifier"
    d = tmp_path / "regression"
    cfg = BertConfig(**{k: v for k, v in model.config.to_dict().items() if k not in ("id2label", "label2id")})
    cfg.num_labels = 1
    BertForSequenceClassification(cfg).save_pretrained(str(d)), tok.save_pretrained(str(d))
    cases[d] = "regression model (num_labels 1)"
    d = tmp_path / "multilabel"
    cfg = BertConfig(**model.config.to_dict())
    cfg.problem_type = "multi_label_classification"
    BertForSequenceClassification(cfg).save_pretrained(str(d)), tok.save_pretrained(str(d))
    cases[d] = "multi-label"
    d = tmp_path / "random"
    d.mkdir()
    (d / "notes.txt").write_text("hello")
    cases[d] = "not a Hugging Face model folder (no config.json)"
    d = tmp_path / "pickled"
    d.mkdir()
    model.config.save_pretrained(str(d))
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    cases[d] = "holds no safetensors weights"
    d = tmp_path / "headless"  # says it is a classifier, but its weights hold no head
    BertModel(model.config).save_pretrained(str(d)), tok.save_pretrained(str(d))
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "architectures": ["BertForSequenceClassification"]}))
    cases[d] = "lacks trained weights for"
    for src, why in cases.items():
        before = folder_hash(src)
        assert why in one_line(capsys, ["import", src, "--out", tmp_path / "out"]), src
        assert folder_hash(src) == before and not (tmp_path / "out").exists()
    src = hf_models.save("bert", tmp_path / "ok")
    assert "inside" in one_line(capsys, ["import", src, "--out", src / "ck"])
    assert not (src / "ck").exists()


def test_hub_id_offline_one_line(tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants as C

    monkeypatch.setattr(C, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = one_line(capsys, ["import", "someone/no-such-classifier", "--out", tmp_path / "o"])
    assert "not a local folder" in line and "hub" in line


def test_app_imports_a_folder_lists_it_and_every_page_opens(made, tmp_path, monkeypatch):
    from test_app import PAGES, assert_clean, new_app

    root = tmp_path / "models"
    root.mkdir()
    monkeypatch.setenv("ADVVIZ_MODELS_DIR", str(root))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    src, before, _ = made["roberta"]
    at = new_app("models")
    at.text_input(key="imp_src").input(str(src))
    at.text_input(key="imp_name").input("my-roberta")
    at.text_input(key="imp_dataset").input(str(made["toy"])).run()
    at.button(key="imp_go").click().run()
    assert_clean(at)
    assert any("Imported" in s.value for s in at.success)
    table = at.dataframe[0].value
    row = table[table["name"] == "my-roberta"].iloc[0]
    assert row["method"] == "imported" and row["source"] == str(src.resolve()) and row["arch"] == "roberta"
    assert folder_hash(src) == before
    (tmp_path / "empty").mkdir()
    at.text_input(key="imp_src").input(str(tmp_path / "empty"))  # not a model folder: one error, the page stays
    at.text_input(key="imp_name").input("other").run()
    at.button(key="imp_go").click().run()
    assert not at.exception and any("no config.json" in e.value for e in at.error)
    for page in PAGES[1:]:
        assert_clean(new_app(page))


def test_textattack_recipe_runs_on_an_imported_model(made, ta, capsys):
    ck = made["bert"][2]
    assert main(["eval", str(ck), "--attack", "textattack:deepwordbug", "--max-examples", "6", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["attacks"][0]
    assert res["recipe"] == "deepwordbug" and res["n"] == 4  # the toy set's dev split


def test_import_by_name_lands_in_the_models_root(made, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ADVVIZ_MODELS_DIR", str(tmp_path / "root"))
    assert main(["import", str(made["albert"][0]), "--name", "my-albert"]) == 0
    assert advviz.load(tmp_path / "root" / "my-albert").config["model"]["arch"] == "albert"
    assert "not a valid model name" in one_line(capsys, ["import", made["albert"][0], "--name", "../escape"])
    before = folder_hash(tmp_path / "root" / "my-albert")
    line = one_line(capsys, ["import", made["bert"][0], "--name", "my-albert"])  # never silently replaced
    assert "--overwrite" in line and folder_hash(tmp_path / "root" / "my-albert") == before
    assert main(["import", str(made["bert"][0]), "--name", "my-albert", "--overwrite"]) == 0
    assert advviz.load(tmp_path / "root" / "my-albert").config["model"]["arch"] == "bert"


def test_project_compare_and_report_run_on_an_imported_model(made, tmp_path, capsys):
    ck, other = made["roberta"][2], made["albert"][2]
    assert main(["project", str(ck), "--n", "8", "--attack", "pgd", "--reducer", "pca", "--no-cache",
                 "--out", str(tmp_path / "p.parquet")]) == 0
    assert (tmp_path / "p.parquet").is_file()
    assert main(["compare", str(ck), str(other), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] > 0
    assert main(["report", str(ck), str(other), "--attack", "pgd", "--eps", "0.1", "--out", str(tmp_path / "r.md")]) == 0
    assert "imported" in (tmp_path / "r.md").read_text()


def test_init_from_an_advviz_transformer_checkpoint_keeps_its_head(made, tmp_path, monkeypatch):
    import advviz.train as T
    from advviz.storage.checkpoint import save_checkpoint
    from conftest import make_tiny_bert

    model = make_tiny_bert()
    ck = save_checkpoint(tmp_path / "minilm", model, {"data": {"name": "x", "label_names": ["negative", "positive"]}},
                         {})
    seen, real = [], T.train_one_step

    def spy(method, m, *a, **k):
        if not seen:
            seen.append((m.head.weight.detach().clone(), m.head.bias.detach().clone()))
        return real(method, m, *a, **k)

    monkeypatch.setattr(T, "train_one_step", spy)
    assert main(["train", "--init-from", str(ck), "--dataset", str(made["toy"]), "--max-steps", "1", "--quiet",
                 "--out", str(tmp_path / "t")]) == 0
    assert torch.equal(seen[0][0], model.head.weight) and torch.equal(seen[0][1], model.head.bias)
    assert advviz.load(tmp_path / "t").config["train"]["arch"] == "tiny-bert"
