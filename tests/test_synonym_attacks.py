"""The synonym attacks: ``textattack:pwws`` offline on Debian's WordNet and ``textattack:textfooler-cf``
over the counter-fitted substitution sets (:mod:`advviz.analysis.discrete.wordnet`,
:mod:`advviz.analysis.discrete.synonym_swap`).

They need the extra ``textattack`` (``make test`` runs them in ``.venv-textattack``); the PWWS runs
also need WordNet (Debian's ``wordnet-base`` + ``wordnet-sense-index``, which ``make
setup-textattack`` installs where apt allows, or the user's NLTK corpus) and skip without it."""

from __future__ import annotations

import gzip
import json
import math

import pytest

import advviz
from advviz.analysis import discrete
from advviz.analysis.discrete import synonym_swap, wordnet
from advviz.cli import main
from advviz.errors import AdvvizError
from advviz.storage.checkpoint import save_checkpoint
from conftest import LABELS, SENTENCES, make_tiny_bert, make_tiny_rnn
from test_textattack import RUN, _check_consistent, _robustness_table, app_root, ta, trained_lstm  # noqa: F401 - fixtures

pytestmark = pytest.mark.textattack


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch):
    """advviz's cache folder (the WordNet build) under the test's temporary root, never ~/.cache."""
    monkeypatch.setenv(wordnet.CACHE_ENV, str(tmp_path_factory.getbasetemp() / "advviz-cache"))


@pytest.fixture
def have_wordnet(ta):
    if wordnet.missing():
        pytest.skip("WordNet is not on this machine (apt-get install wordnet-base wordnet-sense-index)")


@pytest.fixture(scope="module")
def sets(data_dir):
    from advviz import substitutions

    return substitutions.load(None, data_dir)


def _run(model, texts, labels, recipe, **kw):
    return discrete.run_textattack(model, texts, labels, recipe, seed=0, batch_size=16, **kw)


def _check_textfooler_cf(ta, res, sets):
    """Every swap is a non-stop word replaced by a member of its own substitution set, and at most
    ⌈30 %⌉ of a text's words change."""
    stop = discrete.textfooler_stopwords(ta)
    for r in res["per_example"]:
        assert len(r["changed_words"]) <= math.ceil(synonym_swap.MAX_CHANGED_SHARE * r["n_words"])
        for c in r["changed_words"]:
            assert c["original"].lower() not in stop
            assert c["adversarial"].lower() in sets.get(c["original"].lower(), []), c


# --------------------------------------------------------------------------------------------
# WordNet from Debian's files


@pytest.mark.skipif(not (wordnet.DEBIAN_DIR / "index.sense").is_file(), reason="Debian's WordNet not installed")
def test_wordnet_corpus_is_built_from_debian_files_as_copies(ta, tmp_path, monkeypatch):
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    monkeypatch.setattr(nltk.data, "path", [])  # no user corpus: advviz's build is used
    monkeypatch.setattr(wordnet, "_STATE", {})
    where = wordnet.ensure(cache=tmp_path / "nltk_data")
    target = tmp_path / "nltk_data" / "corpora" / "wordnet"
    assert "built from /usr/share/wordnet" in where and nltk.data.path == [str(tmp_path / "nltk_data")]
    lex = (target / "lexnames").read_text().splitlines()
    assert len(lex) == 45 and lex[0] == "00\tadj.all\t3" and lex[5] == "05\tnoun.animal\t1"
    assert lex[44] == "44\tadj.ppl\t3"
    for name in wordnet.COPIED:
        st = (target / name).lstat()
        assert (target / name).is_file() and not (target / name).is_symlink() and st.st_nlink == 1
        assert st.st_size == (wordnet.DEBIAN_DIR / name).stat().st_size
    with pytest.warns(UserWarning, match="multilingual"):  # no OMW reader given: English only, as in PWWS
        wn = WordNetCorpusReader(str(target), None)
    assert wn.synsets("dog")[0].lexname() == "noun.animal" and wn.lemma_from_key("dog%1:05:00::").name() == "dog"
    # a second process reuses the build; nothing is rewritten
    mtime = (target / "data.noun").stat().st_mtime_ns
    monkeypatch.setattr(wordnet, "_STATE", {})
    wordnet.ensure(cache=tmp_path / "nltk_data")
    assert (target / "data.noun").stat().st_mtime_ns == mtime
    assert not [p for p in target.parent.iterdir() if p.name != "wordnet"]  # no temporary left behind


def test_a_foreign_directory_where_advviz_builds_is_left_alone(ta, tmp_path, monkeypatch):
    import nltk

    src = tmp_path / "debian"
    src.mkdir()
    for name in wordnet.COPIED:
        (src / name).write_text("x\n")
    target = tmp_path / "nltk_data" / "corpora" / "wordnet"
    target.mkdir(parents=True)
    (target / "mine.txt").write_text("a user's file")
    monkeypatch.setattr(nltk.data, "path", [])
    monkeypatch.setattr(wordnet, "_STATE", {})
    with pytest.raises(AdvvizError, match="advviz did not write it"):
        wordnet.ensure(src, tmp_path / "nltk_data")
    assert sorted(p.name for p in target.iterdir()) == ["mine.txt"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["wordnet"]


def test_a_stale_advviz_build_is_rebuilt_from_the_new_files(ta, tmp_path, monkeypatch):
    """Debian's files changed (an upgrade): advviz's own build is replaced whole, nothing else is."""
    import nltk

    src = tmp_path / "debian"
    src.mkdir()
    for name in wordnet.COPIED:
        (src / name).write_text("x\n")
    (tmp_path / "nltk_data" / "corpora").mkdir(parents=True)
    (tmp_path / "nltk_data" / "corpora" / "stopwords").mkdir()  # a neighbour advviz did not write
    monkeypatch.setattr(nltk.data, "path", [])
    monkeypatch.setattr(wordnet, "_STATE", {})
    wordnet.ensure(src, tmp_path / "nltk_data")
    target = tmp_path / "nltk_data" / "corpora" / "wordnet"
    assert (target / "data.noun").read_text() == "x\n"
    (src / "data.noun").write_text("a newer release\n")
    monkeypatch.setattr(wordnet, "_STATE", {})
    wordnet.ensure(src, tmp_path / "nltk_data")
    assert (target / "data.noun").read_text() == "a newer release\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["stopwords", "wordnet"]


def test_the_users_own_nltk_wordnet_wins(ta, tmp_path, monkeypatch):
    import nltk

    (tmp_path / "user" / "corpora" / "wordnet").mkdir(parents=True)
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "user")])
    monkeypatch.setattr(wordnet, "_STATE", {})
    where = wordnet.ensure(tmp_path / "no-debian", tmp_path / "cache")
    assert where.startswith("nltk_data") and str(tmp_path / "user") in where
    assert nltk.data.path == [str(tmp_path / "user")] and not (tmp_path / "cache").exists()


def test_missing_wordnet_is_one_line_naming_what_to_install(ta, tmp_path, capsys, monkeypatch):
    import nltk

    d = save_checkpoint(tmp_path / "ck", make_tiny_rnn("lstm"), RUN, {})
    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty")])  # no user corpus either
    monkeypatch.setattr(wordnet, "DEBIAN_DIR", tmp_path / "empty")
    monkeypatch.setattr(wordnet, "_STATE", {})
    monkeypatch.setenv(wordnet.CACHE_ENV, str(tmp_path / "cache"))
    assert main(["eval", str(d), "--attack", "textattack:pwws"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "apt-get install wordnet-base wordnet-sense-index" in err and "nltk.downloader wordnet" in err
    assert not (tmp_path / "cache").exists()


def test_pwws_is_built_without_the_network(ta, have_wordnet, tmp_path, monkeypatch, capfd):
    """WordSwapWordNet's ``nltk.download("omw-1.4")`` is answered without a download attempt or a
    message; the English synonyms come from WordNet all the same."""
    import nltk

    calls = []
    monkeypatch.setattr(nltk, "download", lambda *a, **k: calls.append(a) or True)
    model = advviz.load(save_checkpoint(tmp_path / "ck", make_tiny_rnn("lstm"), RUN, {}))
    capfd.readouterr()
    attack = discrete.build(model, "pwws")
    assert calls == [] and capfd.readouterr().err == ""
    assert {"beneficial", "estimable"} <= set(attack.transformation._get_replacement_words("good"))
    assert nltk.download("x") is True and calls == [("x",)]  # restored after the build


# --------------------------------------------------------------------------------------------
# textfooler-cf


def test_a_missing_neighbour_file_is_one_line(ta, tmp_path, capsys):
    d = save_checkpoint(tmp_path / "ck", make_tiny_rnn("lstm"), RUN, {})
    (tmp_path / "nodata").mkdir()
    for tail, expect in ((["--neighbors", str(tmp_path / "nope.json")], "no such file"),
                         (["--data-dir", str(tmp_path / "nodata")], "counterfitted_neighbors.json.gz")):
        assert main(["eval", str(d), "--attack", "textattack:textfooler-cf", *tail]) == 2
        err = capsys.readouterr().err.strip()
        assert expect in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert main(["eval", str(d), "--attack", "textattack:deepwordbug", "--neighbors", str(tmp_path / "x")]) == 2
    assert "--neighbors applies to" in capsys.readouterr().err
    assert main(["eval", str(d), "--attack", "pgd", "--neighbors", str(tmp_path / "x")]) == 2
    assert "--neighbors needs --attack textattack:RECIPE" in capsys.readouterr().err
    nope = str(tmp_path / "nope.json")
    for tail, expect in ((["--textattack", "textfooler-cf", "--neighbors", nope], "no such file"),
                         (["--textattack", "deepwordbug", "--neighbors", nope], "applies to")):
        assert main(["report", str(d), *tail, "--out", str(tmp_path / "r.md")]) == 2
        err = capsys.readouterr().err.strip()
        assert expect in err and len(err.splitlines()) == 1 and not (tmp_path / "r.md").exists()


def test_an_output_never_replaces_the_substitution_sets(ta, tmp_path, capsys):
    d = save_checkpoint(tmp_path / "ck", make_tiny_rnn("lstm"), RUN, {})
    sets = tmp_path / "sets.json"
    sets.write_text('{"good": ["fine"]}')
    assert main(["eval", str(d), "--attack", "textattack:textfooler-cf", "--neighbors", str(sets),
                 "--per-example", str(sets), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert "substitution sets" in err and len(err.splitlines()) == 1
    assert sets.read_text() == '{"good": ["fine"]}'


@pytest.mark.parametrize("recipe", ["textfooler-cf", "pwws"])
def test_recipes_on_minilm(ta, recipe, tmp_path, data_dir, request):
    if recipe == "pwws":
        request.getfixturevalue("have_wordnet")
    model = advviz.load(save_checkpoint(tmp_path / "bert", make_tiny_bert(), RUN, {}))
    res = _run(model, SENTENCES[:4], LABELS[:4], recipe, data_dir=data_dir)
    assert res["row"]["name"] == f"textattack:{recipe}" and len(res["per_example"]) == 4
    _check_consistent(model, res)
    again = _run(model, SENTENCES[:4], LABELS[:4], recipe, data_dir=data_dir)
    assert again["per_example"] == res["per_example"]
    if recipe == "textfooler-cf":
        assert res["row"]["neighbors"].endswith("counterfitted_neighbors.json.gz") and res["row"]["variant"]


@pytest.mark.slow
def test_synonym_attacks_on_a_trained_lstm(ta, have_wordnet, trained_lstm, data_dir, sets):
    from nltk.corpus import wordnet as wn

    model = advviz.load(trained_lstm)
    ds = model.examples("sst2-sent", "dev", data_dir).subset(12, 0)
    for recipe in ("textfooler-cf", "pwws"):
        res = _run(model, ds.texts, ds.labels, recipe, data_dir=data_dir)
        assert res["row"]["succeeded"] > 0, recipe
        _check_consistent(model, res)
        again = _run(model, ds.texts, ds.labels, recipe, data_dir=data_dir)
        assert again["per_example"] == res["per_example"], recipe
        if recipe == "textfooler-cf":
            _check_textfooler_cf(ta, res, sets)
        else:
            for r in res["per_example"]:
                for c in r["changed_words"]:
                    lemmas = {n.lower() for s in wn.synsets(c["original"]) for n in s.lemma_names()}
                    assert c["adversarial"].lower() in lemmas, c


@pytest.mark.slow
def test_textfooler_cf_reads_the_given_sets_and_never_moves_a_word_without_neighbours(
        ta, trained_lstm, data_dir, sets, tmp_path, capsys):
    """Through the CLI with ``--neighbors FILE``: the words the default sets' attack changed are
    given no neighbour; a second run never moves them, and every swap comes from the given file."""
    model = advviz.load(trained_lstm)
    ds = model.examples("sst2-sent", "dev", data_dir).subset(12, 0)
    first = _run(model, ds.texts, ds.labels, "textfooler-cf", data_dir=data_dir)
    moved = {c["original"].lower() for r in first["per_example"] for c in r["changed_words"]}
    assert moved
    mine = {w: ([] if w in moved else v) for w, v in sets.items()}
    path = tmp_path / "mine.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        json.dump(mine, f)
    rows = tmp_path / "rows.jsonl"
    assert main(["eval", str(trained_lstm), "--attack", "textattack:textfooler-cf", "--neighbors", str(path),
                 "--data-dir", str(data_dir), "--max-examples", "12", "--per-example", str(rows), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["attacks"][0]["neighbors"] == str(path)
    res = {"per_example": [json.loads(line) for line in rows.read_text().splitlines()]}
    assert [r["text"] for r in res["per_example"]] == [r["text"] for r in first["per_example"]]
    assert not moved & {c["original"].lower() for r in res["per_example"] for c in r["changed_words"]}
    _check_textfooler_cf(ta, res, mine)


def test_the_robustness_page_offers_the_synonym_recipes():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "app"))
    from appkit import discrete as page

    assert {"textfooler-cf", "pwws"} <= set(page.recipes())
    assert "textfooler-cf" in page.variants(["textfooler-cf"])
    assert "textfooler-cf" in page.recipe_help()


@pytest.mark.slow
def test_the_robustness_page_runs_the_synonym_recipes(ta, have_wordnet, app_root, monkeypatch):
    at, table = _robustness_table(["textfooler-cf", "pwws"], app_root, monkeypatch)
    assert table["recipe"].tolist() == ["textfooler-cf", "pwws"] and (table["n"] == 12).all()
    assert any("textfooler-cf" in c.value and "differs" in c.value for c in at.caption)
