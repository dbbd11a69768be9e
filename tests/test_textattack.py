"""Discrete attacks through TextAttack (``advviz eval --attack textattack:RECIPE``), on every model
family, and their overlap with the embedding adversary's top-3 tokens.

These tests need the optional extra ``textattack``: ``make test`` runs them in ``.venv-textattack``
(where ``ADVVIZ_REQUIRE_TEXTATTACK=1`` turns a missing TextAttack into a failure, not a skip). The
tests of what happens *without* the extra and of the word/token alignment run everywhere."""

from __future__ import annotations

import csv
import importlib.util
import json
import os

import numpy as np
import pytest

import advviz
from advviz.analysis import discrete
from advviz.analysis.discrete import recipes, textattack_env
from advviz.cli import main
from advviz.errors import AdvvizError
from advviz.storage.checkpoint import save_checkpoint
from conftest import LABELS, SENTENCES, make_tiny_bert, make_tiny_rnn

RUN = {"data": {"name": "sst2-sent", "label_names": ["negative", "positive"]}}
HAVE_TA = importlib.util.find_spec("textattack") is not None


@pytest.fixture(scope="module")
def ta():
    if not HAVE_TA:
        if os.environ.get("ADVVIZ_REQUIRE_TEXTATTACK"):
            pytest.fail("ADVVIZ_REQUIRE_TEXTATTACK is set but textattack is not installed")
        pytest.skip("the textattack extra is not installed (make test runs these in .venv-textattack)")
    return discrete.import_textattack()


def _tiny(kind: str, root):
    m = make_tiny_bert() if kind == "bert" else make_tiny_rnn(kind)
    return advviz.load(save_checkpoint(root / kind, m, RUN, {}))


@pytest.fixture(scope="module")
def trained_lstm(data_dir, tmp_path_factory):
    """A GloVe-50d LSTM trained briefly on 800 real SST-2 sentences: accurate enough for attacks to succeed."""
    from advviz.methods import build_method
    from advviz.train import TrainConfig, Trainer

    out = tmp_path_factory.mktemp("ta") / "lstm"
    cfg = TrainConfig(dataset="sst2-sent", arch="lstm", epochs=2, max_train=800, max_eval=32, out=str(out),
                      data_dir=str(data_dir), seed=0)
    Trainer(cfg, build_method("baseline"), progress=False).fit()
    return out


def _check_consistent(model, res):
    """What TextAttack reports agrees with the model itself, example by example."""
    row, per = res["row"], res["per_example"]
    n = len(per)
    assert row["n"] == n == row["succeeded"] + row["failed"] + row["skipped"]
    kinds = [r["result"] for r in per]
    assert kinds.count("succeeded") == row["succeeded"] and kinds.count("skipped") == row["skipped"]
    preds = model.predict([r["text"] for r in per]).argmax(-1)
    assert row["clean_accuracy"] == pytest.approx(np.mean(preds == [r["label"] for r in per]), abs=1e-4)
    assert row["accuracy"] == pytest.approx(row["failed"] / n, abs=1e-4)
    assert row["accuracy"] <= row["clean_accuracy"]
    adv = model.predict([r["adversarial_text"] for r in per]).argmax(-1)
    for r, p, q in zip(per, preds, adv):
        assert r["pred"] == p
        if r["result"] == "skipped":
            assert r["pred"] != r["label"] and r["changed_words"] == [] and r["queries"] == 0
        elif r["result"] == "succeeded":
            assert q == r["adv_pred"] != r["label"] and r["changed_words"] and r["adversarial_text"] != r["text"]
        else:
            assert r["pred"] == r["label"] and q == r["label"]
    if row["succeeded"]:
        assert 0 < row["perturbed_word_share"] <= 1 and row["mean_queries"] > 0
    json.loads(json.dumps(res, allow_nan=False))


@pytest.mark.textattack
@pytest.mark.parametrize("kind", ["lstm", "gru", "bert"])
def test_deepwordbug_on_every_family(ta, kind, tmp_path):
    model = _tiny(kind, tmp_path)
    res = discrete.run_textattack(model, SENTENCES, LABELS, "textattack:deepwordbug", batch_size=4)
    assert res["row"]["name"] == "textattack:deepwordbug" and res["row"]["variant"] is None
    _check_consistent(model, res)


@pytest.mark.textattack
@pytest.mark.slow
def test_attacks_succeed_on_a_trained_lstm_and_agree_with_the_model(ta, trained_lstm, data_dir):
    model = advviz.load(trained_lstm)
    ds = model.examples("sst2-sent", "dev", data_dir).subset(24, 0)
    for recipe in ("deepwordbug", "textfooler-glove"):
        res = discrete.run_textattack(model, ds.texts, ds.labels, recipe, seed=0)
        assert res["row"]["succeeded"] > 0, recipe
        _check_consistent(model, res)
        again = discrete.run_textattack(model, ds.texts, ds.labels, recipe, seed=0)
        assert [r["adversarial_text"] for r in again["per_example"]] == [r["adversarial_text"] for r in res["per_example"]]
    # textfooler-glove swaps whole words for GloVe neighbours within TextFooler's cosine bound
    emb = discrete.glove_embedding(ta)
    stop = discrete.textfooler_stopwords(ta)
    for r in res["per_example"]:
        for c in r["changed_words"]:
            assert c["original"].lower() not in stop
            assert emb.get_cos_sim(c["original"].lower(), c["adversarial"].lower()) >= 0.5 - 1e-6


@pytest.mark.textattack
def test_glove_neighbours_are_cosine_ranked_without_the_word(ta):
    emb = discrete.glove_embedding(ta)
    i = emb.word2index("good")
    nn = emb.nearest_neighbours(i, 10)
    assert len(nn) == 10 and i not in nn
    sims = [emb.get_cos_sim(i, j) for j in nn]
    assert sims == sorted(sims, reverse=True)
    m = emb.embedding_matrix
    best = np.argsort(-(m @ m[i]))[:11].tolist()
    assert nn == [j for j in best if j != i][:10]


@pytest.mark.textattack
def test_textfooler_stopwords_read_from_the_recipe(ta):
    stop = discrete.textfooler_stopwords(ta)
    assert {"the", "a", "not", "wouldn't"} <= stop and "good" not in stop and len(stop) > 200


@pytest.mark.textattack
def test_stopwords_come_from_nltk_or_advviz(ta):
    import nltk

    words = nltk.corpus.stopwords.words("english")
    assert "the" in words and "mightn't" in words
    assert discrete.stopword_source() in ("nltk_data", "advviz (NLTK's English list, 179 words)")
    bundled = (discrete.STOPWORDS_DIR / "corpora" / "stopwords" / "english").read_text().split()
    assert len(bundled) == 179 == len(set(bundled))


@pytest.mark.textattack
@pytest.mark.slow
def test_cli_eval_textattack_writes_rows_csv_and_augment_reads_it(ta, trained_lstm, data_dir, tmp_path, capsys):
    per, adv = tmp_path / "per.jsonl", tmp_path / "adv.csv"
    argv = ["eval", str(trained_lstm), "--data-dir", str(data_dir), "--attack", "textattack:deepwordbug",
            "--max-examples", "20", "--per-example", str(per), "--adversarial-csv", str(adv), "--overlap", "spgd",
            "--json"]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out)  # stdout is one JSON object: TextAttack's chatter kept off it
    [a] = res["attacks"]
    assert set(discrete.ROW_KEYS) <= set(a) and a["name"] == "textattack:deepwordbug" and a["n"] == 20
    assert res["n"] == 20 and a["clean_accuracy"] == pytest.approx(res["accuracy"], abs=1e-4)
    o = a["overlap"]
    assert o["attack"]["name"] == "spgd" and o["n_examples"] == a["succeeded"] and "examples" not in o
    assert o["n_changed"] >= o["n_in_top3"] >= 0
    rows = [json.loads(line) for line in per.read_text().splitlines()]
    assert len(rows) == 20 and {"text", "adversarial_text", "label", "pred", "adv_pred", "result"} <= set(rows[0])
    assert {r["result"] for r in rows} <= set(discrete.RESULT_KINDS)
    with open(adv, newline="", encoding="utf-8") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == a["succeeded"] > 0
    ok = [r for r in rows if r["result"] == "succeeded"]
    assert [c["text"] for c in csv_rows] == [" ".join(r["adversarial_text"].split()) for r in ok]
    assert [int(c["source_index"]) for c in csv_rows] == [r["source_index"] for r in ok]
    from advviz.data import load_dataset, read_augment

    aug = read_augment(adv, load_dataset("sst2-sent", "train", str(data_dir)))
    assert aug.labels == [r["label"] for r in ok]
    # the human-readable lines (the output files the user named are written again, whole)
    assert main(argv[:-1]) == 0
    out = capsys.readouterr().out
    assert "textattack:deepwordbug: accuracy" in out and "examples/s" in out and "top-3 ‖δ‖ tokens under spgd" in out


@pytest.mark.textattack
@pytest.mark.parametrize("argv_tail, expect", [
    (["--attack", "textattack:nope"], "unknown TextAttack recipe"),
    (["--attack", "textattack:deepwordbug", "--max-examples", "0"], "--max-examples"),
    (["--attack", "textattack:deepwordbug", "--eps", "0.1"], "--eps"),
    (["--attack", "textattack:deepwordbug", "--attack-batch-size", "0"], "--attack-batch-size"),
    (["--attack", "textattack:deepwordbug", "--adversarial-csv", "x.tsv"], ".csv"),
    (["--attack", "pgd", "--adversarial-csv", "x.csv"], "textattack:RECIPE"),
    (["--attack", "pgd", "--overlap", "spgd"], "--overlap needs"),
    (["--attack", "textattack:deepwordbug", "--overlap", "nope"], "not an embedding-space attack"),
])
def test_bad_input_is_one_line(ta, tmp_path, capsys, argv_tail, expect):
    d = save_checkpoint(tmp_path / "ck", make_tiny_rnn("lstm"), RUN, {})
    assert main(["eval", str(d), *argv_tail]) == 2
    err = capsys.readouterr().err.strip()
    assert expect in err and len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.textattack
def test_missing_resources_are_one_line(ta, tmp_path, capsys, monkeypatch):
    d = save_checkpoint(tmp_path / "ck", make_tiny_rnn("lstm"), RUN, {})
    monkeypatch.setattr(recipes, "_pwws_missing", lambda: ["NLTK corpus 'wordnet' (python -m nltk.downloader wordnet)"])
    monkeypatch.setitem(discrete.RECIPES, "pwws", discrete.Recipe("pwws", "PWWS", None, recipes._build_pwws,
                                                                  recipes._pwws_missing))
    monkeypatch.setenv("TA_CACHE_DIR", str(tmp_path / "empty-cache"))
    for recipe, expect in (("pwws", "wordnet"), ("textfooler", "counter-fitted")):
        assert main(["eval", str(d), "--attack", f"textattack:{recipe}"]) == 2
        err = capsys.readouterr().err.strip()
        assert expect in err and len(err.splitlines()) == 1


def test_without_the_extra_one_line_says_how_to_install(tmp_path, capsys, monkeypatch):
    d = save_checkpoint(tmp_path / "ck", make_tiny_rnn("lstm"), RUN, {})
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "textattack" else real(name, *a))
    monkeypatch.setattr(textattack_env, "_STATE", {})
    assert main(["eval", str(d), "--attack", "textattack:deepwordbug"]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install -e '.[textattack]'" in err and len(err.splitlines()) == 1
    out = tmp_path / "r.md"
    assert main(["report", str(d), "--textattack", "deepwordbug", "--out", str(out)]) == 2
    assert "[textattack]" in capsys.readouterr().err and not out.exists()


def test_unknown_recipe_needs_no_textattack():
    with pytest.raises(AdvvizError, match="unknown TextAttack recipe 'nope'"):
        discrete.recipe_of("textattack:nope")
    assert discrete.recipe_of("textattack:deepwordbug") == "deepwordbug"


# --------------------------------------------------------------------------------------------
# alignment of TextAttack's words with the model's tokens (no TextAttack needed)


def test_align_word_tokenizer():
    tok = make_tiny_rnn("lstm").tokenizer
    text = "the movie's plot , isn't good"
    words = ["the", "movie's", "plot", "isn't", "good"]  # TextAttack drops the lone comma
    assert discrete.align(tok, text, words) == [[0], [1], [2], [4], [5]]


def test_align_wordpiece_tokenizer():
    tok = make_tiny_bert().tokenizer
    text = "an unflinchingly bleak film"
    pos = discrete.align(tok, text, ["an", "unflinchingly", "bleak", "film"])
    pieces = tok.hf.convert_ids_to_tokens(tok.encode(text))
    assert pieces[0] == "[CLS]" and pos[0] == [1]
    assert len(pos[1]) > 1 and "".join(pieces[p].lstrip("#") for p in pos[1]) == "unflinchingly"
    assert [pieces[p] for p in pos[3]] == ["film"]


@pytest.mark.textattack
@pytest.mark.slow
def test_overlap_counts_changed_words_against_top3(ta, trained_lstm, data_dir):
    model = advviz.load(trained_lstm)
    ds = model.examples("sst2-sent", "dev", data_dir).subset(24, 0)
    res = discrete.run_textattack(model, ds.texts, ds.labels, "deepwordbug")
    ov = discrete.overlap(model, res["per_example"], "spgd", cache_dir=None)
    ok = [r for r in res["per_example"] if r["result"] == "succeeded"]
    assert ov["n_examples"] == len(ok) == len(ov["examples"]) > 0
    assert ov["n_changed"] == sum(len(e["in_top3"]) for e in ov["examples"]) > 0
    assert ov["n_in_top3"] == sum(sum(e["in_top3"]) for e in ov["examples"])
    assert 0 <= ov["share"] <= 1 and 0 < ov["chance_share"] <= 1
    # recomputed by hand from the heatmap tokens: a changed word is "in top-3" iff one of its positions is
    # among the sentence's three largest non-zero norms
    for e in ov["examples"]:
        norms = {t["index"]: t["norm"] for t in e["tokens"]}
        top = sorted((p for p in norms if norms[p] > 0), key=lambda p: (-norms[p], p))[:3]
        assert any(p in top for p in e["changed"]) == any(e["in_top3"])


@pytest.mark.textattack
@pytest.mark.slow
def test_report_adds_the_discrete_table_and_averages_seeds(ta, trained_lstm, data_dir, tmp_path):
    from advviz.analysis.report import build_report
    from advviz.methods import build_method
    from advviz.train import TrainConfig, Trainer

    other = tmp_path / "lstm-s1"
    Trainer(TrainConfig(dataset="sst2-sent", arch="lstm", epochs=2, max_train=800, max_eval=32, out=str(other),
                        data_dir=str(data_dir), seed=1), build_method("baseline"), progress=False).fit()
    rep = build_report([str(trained_lstm), str(other)], "sst2-sent", max_examples=16, epsilons=[0.5],
                       data_dir=str(data_dir), out_md=tmp_path / "r.md", textattack=["deepwordbug"],
                       textattack_examples=10)
    assert rep["textattack"] == ["textattack:deepwordbug"]
    for r in rep["rows"]:
        [a] = r["discrete"]
        assert a["name"] == "textattack:deepwordbug" and a["n"] == 10
    [g] = rep["seed_groups"]
    [d] = g["discrete"]
    accs = [r["discrete"][0]["accuracy"] for r in rep["rows"]]
    assert d["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    md = (tmp_path / "r.md").read_text()
    assert "Discrete attacks run by TextAttack" in md and md.count("textattack:deepwordbug") >= 3


# --------------------------------------------------------------------------------------------
# the app: Robustness's table, Which words move's overlap view


@pytest.fixture(scope="module")
def app_root(trained_lstm, tmp_path_factory):
    import shutil

    root = tmp_path_factory.mktemp("ta-app")
    shutil.copytree(trained_lstm, root / "lstm-trained")
    return root


def _app(page: str, root, monkeypatch):
    from test_app import new_app

    monkeypatch.setenv("ADVVIZ_MODELS_DIR", str(root))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return new_app(page)


def _robustness_table(recipes: list[str], root, monkeypatch, n: int = 12):
    """(app, its last table): the Robustness page's TextAttack table for ``recipes`` on ``n`` examples,
    the page checked for errors."""
    from test_app import assert_clean

    at = _app("robustness", root, monkeypatch)
    at.multiselect(key="rob_ta_recipes").set_value(recipes)
    at.number_input(key="rob_ta_n").set_value(n)
    at.button(key="rob_ta_go").click().run()
    assert_clean(at)
    return at, at.dataframe[-1].value


@pytest.mark.textattack
@pytest.mark.slow
def test_robustness_page_shows_the_textattack_table(ta, app_root, monkeypatch):
    at, table = _robustness_table(["deepwordbug", "textfooler-glove"], app_root, monkeypatch)
    assert table["recipe"].tolist() == ["deepwordbug", "textfooler-glove"] and (table["n"] == 12).all()
    assert (table["accuracy"] <= table["clean_accuracy"]).all() and table["clean_accuracy"].nunique() == 1
    assert any("textfooler-glove" in c.value and "differs" in c.value for c in at.caption)
    ev = json.loads((app_root / "lstm-trained" / "eval.json").read_text())
    assert {"textattack:deepwordbug", "textattack:textfooler-glove"} <= {a["name"] for a in ev["attacks"]}


@pytest.mark.textattack
@pytest.mark.slow
def test_words_page_opens_a_discrete_example_on_the_heatmap(ta, app_root, monkeypatch):
    from test_app import assert_clean

    at = _app("sentence", app_root, monkeypatch)
    charts = len(at.get("plotly_chart"))
    at.number_input(key="words_ta_n").set_value(24)
    at.button(key="words_ta_go").click().run()
    assert_clean(at)
    labels = [m.label for m in at.metric]
    assert "Swapped words among the top-3 ‖δᵢ‖" in labels and "By chance" in labels
    share = next(m.value for m in at.metric if m.label.startswith("Swapped words among"))
    assert share.endswith("%")
    figs = at.get("plotly_chart")[charts:]  # the example's heatmap (one figure per 16 tokens)
    assert len(figs) >= 1
    specs = [json.loads(f.proto.spec) for f in figs]
    assert any(sp["layout"].get("shapes") for sp in specs), "the changed words are outlined"
    assert any("⇒" in cell for sp in specs for row in sp["data"][0]["text"] for cell in row)
    n_tokens = sum(len(sp["data"][0]["z"][0]) for sp in specs)
    assert all(len(sp["data"][0]["z"][0]) <= 16 for sp in specs) and len(figs) == -(-n_tokens // 16)
    examples = at.selectbox(key="words_ta_example").options
    assert len(examples) >= 1


def test_pages_without_the_extra_say_how_to_install(monkeypatch, app_root):
    from test_app import assert_clean

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "textattack" else real(name, *a))
    monkeypatch.setattr(textattack_env, "_STATE", {})
    for page in ("robustness", "sentence"):
        at = _app(page, app_root, monkeypatch)
        assert_clean(at)
        assert any("pip install -e '.[textattack]'" in i.value for i in at.info), page


@pytest.mark.textattack
@pytest.mark.browser
@pytest.mark.slow
def test_textattack_sections_in_a_real_browser(ta, app_root, tmp_path):
    """Robustness's table and Which words move's outlined heatmap, drawn by Chromium (screenshots in
    test-artifacts/browser/)."""
    from pathlib import Path

    if not Path("/usr/bin/chromium").is_file() or importlib.util.find_spec("playwright") is None:
        pytest.skip("needs /usr/bin/chromium and playwright (.ci/app-deps.sh)")
    from test_browser import browser_page, check_page, serve, wait_idle

    with serve(app_root, tmp_path) as url, browser_page() as page:
        page.goto(f"{url}/robustness")
        wait_idle(page)
        page.get_by_role("button", name="Run TextAttack").click()
        wait_idle(page, 240)
        page.wait_for_selector('[data-testid="stDataFrame"]', timeout=60_000)
        page.wait_for_selector('[data-testid="stPlotlyChart"] .barlayer', timeout=60_000)
        check_page(page, "robustness-textattack")
        page.goto(f"{url}/words")
        wait_idle(page)
        page.get_by_role("button", name="Run TextAttack and compare").click()
        wait_idle(page, 240)
        page.get_by_text("Swapped words among the top-3").first.wait_for(timeout=60_000)
        # the last heatmap is the discrete example's: its changed words outlined (plotly shapes)
        page.wait_for_selector('[data-testid="stPlotlyChart"] .shapelayer path', timeout=60_000)
        assert page.locator('[data-testid="stPlotlyChart"] .heatmaplayer').count() >= 2
        check_page(page, "words-textattack")
