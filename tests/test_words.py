"""The word atlas (``advviz words``, ``advviz.analysis.words``): the aggregate of a hand-made case
computed by hand, agreement with ``inspect`` sentence by sentence, every family × attack on real
sentences, the disk cache (hit, stale, damaged), the JSON/CSV contracts and one-line errors."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
import torch

import advviz
from advviz.analysis import words as W
from advviz.analysis.inspection import inspect
from advviz.analysis.words.attack import _top_flags
from advviz.cli import main
from advviz.errors import AdvvizError
from advviz.methods.base import Method
from advviz.methods.spgd import SPGD
from advviz.storage.checkpoint import load_checkpoint, save_checkpoint
from advviz.storage import outdir
from advviz.storage.jsonio import dumps
from conftest import LABELS, SENTENCES, make_tiny_bert, make_tiny_rnn

ATTACKS = ["advt", "fgsm", "iadvt", "spgd", "pgd", "freelb"]
SMALL = {"iadvt": {"k": 3}, "spgd": {"k": 3}}  # the tiny vocabularies have a few dozen words
WORD_KEYS = {"word", "count", "mean_norm", "top_share", "moved_to", "saliency", "frequency", "flip_share"}
TOP_KEYS = {"model", "dataset", "split", "attack", "n_examples", "words", "correlations"}


def stub(classifier):
    return types.SimpleNamespace(classifier=classifier, name="tiny", directory=None, config={},
                                 label_names=["neg", "pos"])


def save_tiny(path, model=None, name="sst2-sent"):
    model = model or make_tiny_rnn("lstm")
    cfg = {"data": {"name": name, "label_names": ["negative", "positive"]}}
    return save_checkpoint(path, model, cfg, {"dev_accuracy": 0.5})


# -------------------------------------------------------------------------------- by hand

VOCAB = ["<pad>", "<unk>", "good", "bad", "film", "decent", "awful"]
PAD, UNK, GOOD, BAD, FILM, DECENT, AWFUL = range(7)


def hand_records() -> W.TokenRecords:
    """Three sentences:  s0 "good film" (flips), s1 "good good bad" (does not), s2 "bad film" (flips).

    occurrence        norm  moved_to  saliency  top3
    s0 good           0.5   decent    1.0       yes
    s0 film           0.0   -         0.2       no (not moved)
    s1 good           0.3   decent    0.6       yes
    s1 good           0.1   film      0.2       yes (3 moved tokens: all in the top 3)
    s1 bad            0.2   awful     0.4       yes
    s2 bad            0.0   -         0.1       no
    s2 film           0.4   good      0.5       yes
    """
    moved = np.array([DECENT, -1, DECENT, FILM, AWFUL, -1, GOOD])
    norm = np.array([0.5, 0.0, 0.3, 0.1, 0.2, 0.0, 0.4], np.float32)
    return W.TokenRecords(
        sent=np.array([0, 0, 1, 1, 1, 2, 2]), pos=np.array([0, 1, 0, 1, 2, 0, 1]),
        token=np.array([GOOD, FILM, GOOD, GOOD, BAD, BAD, FILM]), norm=norm, moved_to=moved,
        nearest=np.array([GOOD, FILM, GOOD, GOOD, BAD, BAD, FILM]),
        cosine=np.where(moved >= 0, 1.0, np.nan).astype(np.float32), rank=np.where(moved >= 0, 1, 0),
        saliency=np.array([1.0, 0.2, 0.6, 0.2, 0.4, 0.1, 0.5], np.float32),
        top3=np.array([True, False, True, True, True, False, True]),
        label=np.array([1, 1, 0]), pred=np.array([1, 1, 0]), adv_pred=np.array([0, 1, 1]),
        frequency=np.array([0, 0, 40, 10, 30, 5, 2]))


def test_aggregate_of_a_hand_made_case():
    rec = hand_records()
    rec.check(len(VOCAB))
    agg = W.aggregate(rec, VOCAB)
    rows = {r["word"]: r for r in agg["words"]}
    assert set(rows) == {"good", "bad", "film"}  # words never seen have no row
    assert [r["word"] for r in agg["words"]] == ["good", "film", "bad"]  # mean_norm × count: 0.9, 0.4, 0.2
    good, bad, film = rows["good"], rows["bad"], rows["film"]
    assert set(good) == WORD_KEYS
    assert good["count"] == 3 and good["mean_norm"] == pytest.approx(0.3)  # (0.5 + 0.3 + 0.1) / 3
    assert good["top_share"] == pytest.approx(1.0)
    assert good["moved_to"] == [["decent", 2], ["film", 1]]
    assert good["saliency"] == pytest.approx(0.6)  # (1.0 + 0.6 + 0.2) / 3
    assert good["frequency"] == 40
    assert good["flip_share"] == pytest.approx(0.5)  # sentences {s0 flips, s1 does not}: twice in s1 counts once
    assert bad["count"] == 2 and bad["mean_norm"] == pytest.approx(0.1) and bad["top_share"] == pytest.approx(0.5)
    assert bad["moved_to"] == [["awful", 1]] and bad["saliency"] == pytest.approx(0.25)
    assert bad["flip_share"] == pytest.approx(0.5) and bad["frequency"] == 10  # s1 no, s2 yes
    assert film["count"] == 2 and film["mean_norm"] == pytest.approx(0.2) and film["top_share"] == pytest.approx(0.5)
    assert film["moved_to"] == [["good", 1]] and film["saliency"] == pytest.approx(0.35)
    assert film["flip_share"] == pytest.approx(1.0)  # s0 and s2 both flip
    # Spearman over the three words: mean_norm (0.3, 0.1, 0.2) ranks (3, 1, 2);
    # saliency (0.6, 0.25, 0.35) ranks (3, 1, 2) -> +1; frequency (40, 10, 30) ranks (3, 1, 2) -> +1
    c = agg["correlations"]
    assert c["n_words"] == 3 and c["mean_norm_saliency"] == pytest.approx(1.0)
    assert c["mean_norm_frequency"] == pytest.approx(1.0)
    # frequency (40, 30, 10) for (good, film, bad): mean_norm ranks (3,2,1) vs frequency (3,2,1)... swap two
    rec.frequency = np.array([0, 0, 40, 30, 10, 5, 2])  # good 40, bad 30, film 10: ranks (3, 2, 1) vs (3, 1, 2)
    assert W.aggregate(rec, VOCAB)["correlations"]["mean_norm_frequency"] == pytest.approx(0.5)  # 1 − 6·2/(3·8)


def test_aggregate_min_count_sort_and_top_targets():
    rec = hand_records()
    agg = W.aggregate(rec, VOCAB, min_count=3)
    assert [r["word"] for r in agg["words"]] == ["good"] and agg["correlations"]["mean_norm_saliency"] is None
    assert [r["word"] for r in W.aggregate(rec, VOCAB, sort="mean_norm")["words"]] == ["good", "film", "bad"]
    assert [r["word"] for r in W.aggregate(rec, VOCAB, sort="flip_share")["words"]] == ["film", "bad", "good"]
    assert [r["word"] for r in W.aggregate(rec, VOCAB, sort="word")["words"]] == ["bad", "film", "good"]
    assert [r["word"] for r in W.aggregate(rec, VOCAB, sort="count", ascending=True)["words"]] == ["bad", "film", "good"]
    assert W.aggregate(rec, VOCAB, top_targets=1)["words"][0]["moved_to"] == [["decent", 2]]
    assert W.pairs(rec, VOCAB, top=2) == [{"word": "good", "moved_to": "decent", "count": 2},
                                          {"word": "good", "moved_to": "film", "count": 1}]  # ties: by id
    rec.frequency = None
    assert W.aggregate(rec, VOCAB)["words"][0]["frequency"] is None
    with pytest.raises(AdvvizError, match="--min-count"):
        W.aggregate(rec, VOCAB, min_count=0)
    with pytest.raises(AdvvizError, match="--sort"):
        W.aggregate(rec, VOCAB, sort="nope")


def test_compare_by_word_and_sentence_views():
    rec = hand_records()
    a = W.aggregate(rec, VOCAB)["words"]
    b = [{**r, "mean_norm": r["mean_norm"] / 2, "top_share": 0.0} for r in a if r["word"] != "bad"]
    rows = {r["word"]: r for r in W.compare(a, b)}
    assert rows["good"]["delta_mean_norm"] == pytest.approx(-0.15) and rows["good"]["delta_top_share"] == -1.0
    assert rows["bad"]["delta_mean_norm"] is None and rows["bad"]["mean_norm_b"] is None
    order = [r["word"] for r in W.sort_rows(W.compare(a, b), "delta_mean_norm", ascending=True)]
    assert order == ["good", "film", "bad"]  # most protected first; no B value: last either way
    assert [r["word"] for r in W.sort_rows(W.compare(a, b), "delta_mean_norm")][-1] == "bad"
    assert W.sentences_of(rec, VOCAB, "film") == [0, 2] and W.sentences_of(rec, VOCAB, "zzz") == []
    toks = W.sentence_tokens(rec, VOCAB, 1)
    assert [(t["token"], t["moved_to"], t["norm"]) for t in toks] == [("good", "decent", pytest.approx(0.3)),
                                                                     ("good", "film", pytest.approx(0.1)),
                                                                     ("bad", "awful", pytest.approx(0.2))]
    assert W.sentence_tokens(rec, VOCAB, 2)[0]["moved_to"] is None


def test_top_flags_by_hand():
    norms = torch.tensor([[0.5, 0.0, 0.1, 0.3, 0.3], [0.2, 0.0, 0.0, 0.1, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]], dtype=torch.bool)
    top = _top_flags(norms, mask)
    assert top.tolist() == [[True, False, False, True, True], [True, False, False, True, False]]


@pytest.mark.parametrize("bad", ["sent", "token", "moved_to", "norm"])
def test_records_check_refuses_inconsistent_arrays(bad):
    rec = hand_records()
    if bad == "sent":
        rec.sent = rec.sent + 5
    elif bad == "token":
        rec.token = rec.token * 100
    elif bad == "moved_to":
        rec.moved_to = np.full_like(rec.moved_to, DECENT)  # a target where the norm is 0
    else:
        rec.norm = rec.norm[:3]
    with pytest.raises(ValueError):
        rec.check(len(VOCAB))


# -------------------------------------------------------------------------------- the attack pass


@pytest.mark.parametrize("attack", ["pgd", "spgd", "advt"])
def test_records_agree_with_inspect_sentence_by_sentence(tiny_model, attack):
    """Batched and padded, the atlas sees each sentence as `inspect` does (same label: the gold one)."""
    over = SMALL.get(attack, {})
    rec, meta = W.attack_tokens(stub(tiny_model), SENTENCES, LABELS, attack, over, batch_size=4)
    assert meta["cached"] is False and rec.n_sentences == len(SENTENCES)
    vocab = W.model_vocab(stub(tiny_model))
    for i, (text, y) in enumerate(zip(SENTENCES, LABELS)):
        [r] = inspect(stub(tiny_model), [text], attack, over, label=y)
        mine = W.sentence_tokens(rec, vocab, i)
        assert [t["index"] for t in mine] == [t["index"] for t in r["tokens"]]
        assert [t["norm"] for t in mine] == pytest.approx([t["norm"] for t in r["tokens"]], abs=1e-5)
        assert [t["moved_to"] for t in mine] == [t["moved_to"] for t in r["tokens"]]
        assert rec.adv_pred[i] == r["adv_pred"] and rec.pred[i] == r["pred"]


def test_saliency_from_the_attacks_own_gradient_equals_a_separate_pass(tiny_lstm, monkeypatch):
    """SPGD hands its g0 to the atlas (no second backward); FreeLB does not, so the atlas runs
    its own clean forward/backward. Both give the per-example ‖∂L/∂eᵢ‖."""
    tapped, _ = W.attack_tokens(stub(tiny_lstm), SENTENCES, LABELS, "spgd", {"k": 3}, batch_size=4)
    monkeypatch.setattr(SPGD, "perturb_with_grad0", Method.perturb_with_grad0)  # δ only: the atlas's own pass
    separate, _ = W.attack_tokens(stub(tiny_lstm), SENTENCES, LABELS, "spgd", {"k": 3}, batch_size=4)
    np.testing.assert_allclose(tapped.saliency, separate.saliency, rtol=1e-4, atol=1e-7)
    assert np.array_equal(tapped.norm, separate.norm)
    # one sentence alone (batch of 1) has the same saliency as inside a batch: per example, not per batch
    alone, _ = W.attack_tokens(stub(tiny_lstm), SENTENCES[:1], LABELS[:1], "spgd", {"k": 3}, batch_size=1)
    np.testing.assert_allclose(alone.saliency, separate.saliency[separate.sent == 0], rtol=1e-4)


def test_every_family_and_attack_on_real_sentences(data_dir):
    from advviz.data import load_dataset

    ds = load_dataset("sst2-sent", "dev", data_dir).subset(6, 0)
    for model in (make_tiny_rnn("lstm"), make_tiny_rnn("gru"), make_tiny_bert()):
        m = stub(model)
        for attack in ATTACKS:
            a = W.word_atlas(m, ds.texts, ds.labels, attack, SMALL.get(attack), dataset="sst2-sent", split="dev",
                             cache_dir=None)
            assert TOP_KEYS <= set(a) and a["n_examples"] == 6 and a["attack"]["name"] == attack
            assert a["words"] and all(set(r) >= WORD_KEYS for r in a["words"])
            assert sum(r["count"] for r in a["words"]) == sum(
                int(model.perturbable_mask(b["input_ids"], b["attention_mask"]).sum())
                for b in [model.tokenizer.batch(ds.texts)])
            assert json.loads(dumps(a))["words"] == json.loads(json.dumps(a["words"]))  # strict JSON


def test_bad_input_of_the_library(tiny_lstm):
    with pytest.raises(AdvvizError, match="no examples"):
        W.attack_tokens(stub(tiny_lstm), [], [], "spgd")
    with pytest.raises(AdvvizError, match="not an attack"):
        W.attack_tokens(stub(tiny_lstm), SENTENCES, LABELS, "carl")
    with pytest.raises(AdvvizError, match="larger than the vocabulary"):
        W.attack_tokens(stub(tiny_lstm), SENTENCES, LABELS, "spgd", {"k": 1_000})
    with pytest.raises(AdvvizError, match="labels"):
        W.attack_tokens(stub(tiny_lstm), SENTENCES, [0] * 5 + [7], "spgd", {"k": 3})
    with pytest.raises(AdvvizError, match="two checkpoints"):
        W.word_atlas(stub(tiny_lstm), SENTENCES, LABELS, "advt", sort="delta_mean_norm")


# -------------------------------------------------------------------------------- disk cache


def test_cache_hit_then_stale_after_the_weights_change(tmp_path, data_dir):
    import shutil

    d = save_tiny(tmp_path / "ck")
    m = advviz.load(d)
    a = W.word_atlas(m, SENTENCES, LABELS, "spgd", {"k": 3}, data_dir=data_dir)
    [f] = (d / "cache").glob("words-*.safetensors")
    assert a["cached"] is False and a["frequency_source"].startswith("sst2-sent/train")
    assert f.name == f"words-{W.atlas_key(m, SENTENCES, LABELS, 'spgd', {'k': 3})}.safetensors"
    assert outdir.ownership(d)[0] == outdir.CHECKPOINT  # still provably advviz's own (replaceable)
    load_checkpoint(d)  # nothing in the cache looks like a pickle
    b = W.word_atlas(m, SENTENCES, LABELS, "spgd", {"k": 3}, data_dir=data_dir)
    assert b["cached"] is True and b["words"] == a["words"]
    assert W.cached_records(m, SENTENCES, LABELS, "spgd", {"k": 3}) is not None
    c = W.word_atlas(m, SENTENCES, LABELS, "spgd", {"k": 3, "epsilon": 0.5}, data_dir=data_dir)
    assert c["cached"] is False  # other attack settings: another entry
    # the weights change in place (cache/ stays beside them): the entry is stale, never shown
    old = f.read_bytes()
    other = save_tiny(tmp_path / "other", make_tiny_rnn("lstm", seed=3))
    shutil.copyfile(other / "model.safetensors", d / "model.safetensors")
    m2 = advviz.load(d)
    assert W.cached_records(m2, SENTENCES, LABELS, "spgd", {"k": 3}) is None
    e = W.word_atlas(m2, SENTENCES, LABELS, "spgd", {"k": 3}, data_dir=data_dir)
    assert e["cached"] is False and e["words"] != a["words"]
    # the old entry put under the new key's name is refused too: its checkpoint hash is checked
    key = W.atlas_key(m2, SENTENCES, LABELS, "spgd", {"k": 3})
    assert W.cached_records(m2, SENTENCES, LABELS, "spgd", {"k": 3}) is not None
    W.cache_path(d / "cache", key).write_bytes(old)
    assert W.cached_records(m2, SENTENCES, LABELS, "spgd", {"k": 3}) is None
    assert W.word_atlas(m2, SENTENCES, LABELS, "spgd", {"k": 3}, data_dir=data_dir)["words"] == e["words"]


def test_damaged_cache_is_recomputed(tmp_path):
    d = save_tiny(tmp_path / "ck")
    m = advviz.load(d)
    W.word_atlas(m, SENTENCES, LABELS, "advt")
    [f] = (d / "cache").glob("words-*.safetensors")
    for junk in (b"", b"not a safetensors file", f.read_bytes()[:100]):
        f.write_bytes(junk)
        r = W.word_atlas(m, SENTENCES, LABELS, "advt")
        assert r["cached"] is False and r["words"]
    assert W.word_atlas(m, SENTENCES, LABELS, "advt")["cached"] is True


# -------------------------------------------------------------------------------- command line


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("advviz: error:"), err
    assert "Traceback" not in err
    return err


def test_cli_json_csv_and_comparison(tmp_path, capsys, data_dir):
    a = save_tiny(tmp_path / "a")
    b = save_tiny(tmp_path / "b", make_tiny_rnn("lstm", seed=1))
    base = ["--attack", "spgd", "--k", "3", "--max-examples", "40", "--data-dir", str(data_dir)]
    assert main(["words", str(a), *base, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert TOP_KEYS <= set(r) and r["dataset"] == "sst2-sent" and r["split"] == "dev" and r["n_examples"] == 40
    assert r["attack"]["name"] == "spgd" and r["attack"]["k"] == 3 and r["attack"]["epsilon"] == 2.0  # lstm preset
    assert set(r["correlations"]) >= {"mean_norm_saliency", "mean_norm_frequency"}
    scores = [w["mean_norm"] * w["count"] for w in r["words"]]
    assert scores == sorted(scores, reverse=True) and set(r["words"][0]) == WORD_KEYS
    assert main(["words", str(a), *base, "--json", "--min-count", "3", "--sort", "count", "--top", "5"]) == 0
    r3 = json.loads(capsys.readouterr().out)
    assert r3["cached"] is True and len(r3["words"]) == 5 and all(w["count"] >= 3 for w in r3["words"])
    assert [w["count"] for w in r3["words"]] == sorted((w["count"] for w in r3["words"]), reverse=True)
    out = tmp_path / "atlas.csv"
    assert main(["words", str(a), *base, "--out", str(out)]) == 0
    assert "words (min count 1) ->" in capsys.readouterr().out
    import pandas as pd

    df = pd.read_csv(out)
    assert list(df.columns) == ["word", "count", "mean_norm", "top_share", "moved_to", "saliency", "frequency",
                                "flip_share"]
    assert len(df) == len(r["words"])
    assert main(["words", str(a), str(b), *base, "--json", "--sort", "delta_mean_norm", "--ascending"]) == 0
    c = json.loads(capsys.readouterr().out)
    assert c["compare"]["model"] == str(b) and {"delta_mean_norm", "delta_top_share"} <= set(c["words"][0])
    deltas = [w["delta_mean_norm"] for w in c["words"] if w["delta_mean_norm"] is not None]
    assert deltas == sorted(deltas)
    assert main(["words", str(a), str(b), *base]) == 0
    text = capsys.readouterr().out
    assert "compared with" in text and "Δmean_norm" in text and "Spearman over" in text


@pytest.mark.parametrize("argv,msg", [
    (["--min-count", "0"], "--min-count must be at least 1"),
    (["--max-examples", "-3"], "--max-examples must be positive"),
    (["--max-examples", "0"], "--max-examples must be positive"),
    (["--sort", "delta_mean_norm"], "compares two checkpoints"),
    (["--attack", "carl"], "training method, not an attack"),
    (["--attack", "nope"], "not an attack"),
    (["--k", "1000"], "larger than the vocabulary"),
    (["--tau", "0.5"], "is not a setting of --attack spgd"),
    (["--out", "x.txt"], "--out must end in .csv"),
    (["--split", "nope"], "has no split 'nope'"),
    (["--top", "0"], "--top must be positive"),
])
def test_cli_bad_input_is_one_line(tmp_path, capsys, data_dir, argv, msg):
    d = save_tiny(tmp_path / "ck")
    args = ["words", str(d), "--attack", "spgd", "--max-examples", "5", "--data-dir", str(data_dir)]
    if "--attack" in argv:
        args = args[:2] + args[4:]
    assert main(args + argv) == 2
    assert msg in _err(capsys)


def test_cli_missing_malformed_checkpoint_and_empty_split(tmp_path, capsys, data_dir, monkeypatch):
    assert main(["words", str(tmp_path / "nothing"), "--attack", "spgd"]) == 2
    _err(capsys)
    bad = save_tiny(tmp_path / "bad")
    (bad / "config.json").write_text("{not json", encoding="utf-8")
    assert main(["words", str(bad), "--attack", "spgd"]) == 2
    assert "config.json" in _err(capsys)
    d = save_tiny(tmp_path / "ok")
    assert main(["words", str(d), str(d), str(d), "--attack", "spgd"]) == 2
    assert "two to compare" in _err(capsys)
    from advviz.api import Model
    from advviz.data import TextDataset

    monkeypatch.setattr(Model, "examples", lambda self, *a, **k: TextDataset("sst2-sent", "dev", [], [],
                                                                            ["negative", "positive"]))
    assert main(["words", str(d), "--attack", "spgd", "--data-dir", str(data_dir)]) == 2
    assert "has no examples" in _err(capsys)


def test_cli_help_lists_the_attacks_flags(capsys):
    with pytest.raises(SystemExit) as e:
        main(["words", "x", "--attack", "spgd", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--sparsity SPARSITY" in out and "--min-count" in out and "--tau TAU" not in out  # only spgd's flags


def test_a_safetensors_file_whose_length_reads_like_a_pickle_does_not_get_a_checkpoint_refused(tmp_path):
    """A safetensors file starts with its header's length: 0x0280..0x0580 starts like a pickle
    signature, and a checkpoint holding a pickle is refused whole (found on a real run: a 1,408-byte
    atlas header made the checkpoint unloadable). The check recognises safetensors files instead."""
    from safetensors.torch import save_file

    from advviz.storage.checkpoint import PICKLE_PREFIXES, looks_like_pickle, verify_checkpoint_dir

    rec = hand_records()
    ck = save_tiny(tmp_path / "ck")
    collisions = 0
    for extra in range(400, 1500, 3):  # every 8-byte step of the header length is hit
        meta = {"key": "k", "x": "a" * extra}
        W.write_cache(ck / "cache", "k" * 32, rec, meta)
        raw = W.cache_path(ck / "cache", "k" * 32).read_bytes()
        collisions += raw.startswith(PICKLE_PREFIXES)
        assert not looks_like_pickle(raw[:9], len(raw)), extra
        verify_checkpoint_dir(ck)  # not refused
    assert collisions > 0  # such lengths occur
    save_file(rec.tensors(), str(tmp_path / "x.safetensors"))
    assert looks_like_pickle(b"\x80\x04\x95\x1c\x00\x00\x00\x00\x00", 100)  # a real pickle still is one


def test_checkpoint_still_loads_after_atlases_of_every_attack(tmp_path):
    d = save_tiny(tmp_path / "ck")
    m = advviz.load(d)
    for attack in ATTACKS:
        W.word_atlas(m, SENTENCES, LABELS, attack, SMALL.get(attack))
    assert len(list((d / "cache").glob("words-*.safetensors"))) == len(ATTACKS)
    load_checkpoint(d)
    assert outdir.ownership(d)[0] == outdir.CHECKPOINT
