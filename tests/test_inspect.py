"""`inspect` (library + CLI): the issue's JSON keys, norm/moved_to conventions, errors."""

from __future__ import annotations

import json
import types

import pytest
import torch

import advviz
from advviz.storage.checkpoint import save_checkpoint
from advviz.cli import main
from advviz.errors import AdvvizError
from advviz.analysis.inspection import inspect
from conftest import make_tiny_bert, make_tiny_rnn

KEYS = {"model", "text", "attack", "pred", "probs", "adv_pred", "adv_probs", "tokens", "discretized_text",
        "reconstructed_text"}
TOKEN_KEYS = {"index", "token", "norm", "moved_to", "nearest", "reconstructed"}
TEXT = "the movie is good and the acting is great"


def stub(classifier, recon=None):
    """The parts of advviz.api.Model that inspect uses, around a tiny classifier."""
    return types.SimpleNamespace(classifier=classifier, name="tiny", directory=None, label_names=["neg", "pos"],
                                 reconstruct=lambda reps, att: recon(reps, att) if recon else None)


def save_tiny(tmp_path, model=None):
    model = model or make_tiny_rnn("lstm")
    cfg = {"data": {"name": "sst2-sent", "label_names": ["negative", "positive"]}}
    return save_checkpoint(tmp_path / "ckpt", model, cfg, {"dev_accuracy": 0.5})


@pytest.mark.parametrize("attack", ["advt", "fgsm", "iadvt", "spgd", "pgd", "freelb"])
def test_keys_and_conventions(tiny_model, attack):
    [r] = inspect(stub(tiny_model), [TEXT], attack, {"k": 4} if attack in ("iadvt", "spgd") else {})
    assert KEYS <= set(r) and r["attack"]["name"] == attack
    assert len(r["probs"]) == 2 and abs(sum(r["probs"]) - 1) < 1e-5
    special = tiny_model.tokenizer.special_ids
    ids = tiny_model.tokenizer.batch([TEXT])["input_ids"][0]
    assert [t["index"] for t in r["tokens"]] == [i for i, x in enumerate(ids.tolist()) if x not in special]
    for t in r["tokens"]:
        assert TOKEN_KEYS <= set(t) and t["reconstructed"] is None
        assert (t["moved_to"] is None) == (t["norm"] == 0.0)
        assert isinstance(t["nearest"], str)
    json.dumps(r)  # serialisable
    assert r["reconstructed_text"] is None and r["truncated"] is False


def test_spgd_discretized_text_replaces_perturbed_tokens(tiny_lstm):
    [r] = inspect(stub(tiny_lstm), TEXT, "spgd", {"k": 4, "sparsity": 0.75})
    moved = [t for t in r["tokens"] if t["norm"] > 0]
    assert len(moved) == 2  # ⌊0.25·9⌋
    words = [t["moved_to"] or t["token"] for t in r["tokens"]]
    assert r["discretized_text"] == " ".join(words)
    assert all(abs(t["cosine"]) > 0.999 for t in moved)  # SPGD moves along one neighbour direction


def test_reconstruct_ids_are_mapped_to_tokens(tiny_lstm):
    vocab = tiny_lstm.tokenizer.vocab
    recon = lambda reps, att: torch.full(att.shape, vocab.index("good"), dtype=torch.long)  # noqa: E731
    [r] = inspect(stub(tiny_lstm, recon), TEXT, "advt")
    assert all(t["reconstructed"] == "good" for t in r["tokens"])
    assert r["reconstructed_text"] == " ".join(["good"] * len(r["tokens"]))


def test_label_seed_and_weights(tiny_bert):
    before = {k: v.clone() for k, v in tiny_bert.state_dict().items()}
    a = inspect(stub(tiny_bert), [TEXT, "an awful waste of time"], "freelb", {"epsilon": 0.5}, label=0, seed=7)
    b = inspect(stub(tiny_bert), [TEXT, "an awful waste of time"], "freelb", {"epsilon": 0.5}, label=0, seed=7)
    assert a == b and len(a) == 2 and a[0]["label"] == 0
    assert all(torch.equal(before[k], v) for k, v in tiny_bert.state_dict().items())


def test_truncation_is_flagged():
    bert = make_tiny_bert()  # max_length 32
    [r] = inspect(stub(bert), " ".join(["good"] * 60), "advt", {"epsilon": 0.5})
    assert r["truncated"] and r["n_tokens"] > 32 and len(r["tokens"]) == 30


@pytest.mark.parametrize("texts,attack,over,label,msg", [
    ([""], "spgd", None, None, "empty"), (["   "], "advt", None, None, "empty"),
    ([TEXT], "nope", None, None, "unknown method"), ([TEXT], "baseline", None, None, "not an attack"),
    ([TEXT], "spgd", {"sparsity": 2.0}, None, "sparsity"), ([TEXT], "advt", {"epsilon": -1.0}, None, "epsilon"),
    ([TEXT], "advt", None, 5, "label"), ([], "advt", None, None, "no text")])
def test_bad_input(tiny_lstm, texts, attack, over, label, msg):
    with pytest.raises(AdvvizError, match=msg):
        inspect(stub(tiny_lstm), texts, attack, over, label)


def test_real_model_api_and_disk_cache(tmp_path):
    d = save_tiny(tmp_path)
    m = advviz.load(d)
    [r] = inspect(m, TEXT, "iadvt", {"k": 3})
    assert r["model"] == "ckpt" and r["label_names"] == ["negative", "positive"]
    assert (d / "cache" / "neighbors-cosine-k3.safetensors").is_file()


def test_cli_json_and_table(tmp_path, capsys):
    d = save_tiny(tmp_path)
    assert main(["inspect", str(d), "--text", TEXT, "--attack", "spgd", "--k", "3", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert KEYS <= set(r) and r["attack"]["k"] == 3
    inp = tmp_path / "texts.txt"
    inp.write_text(TEXT + "\n\nan awful waste of time\n", encoding="utf-8")
    assert main(["inspect", str(d), "--input", str(inp), "--attack", "pgd", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    assert main(["inspect", str(d), "--text", TEXT, "--attack", "advt"]) == 0
    out = capsys.readouterr().out
    assert "moved_to" in out and "discretized:" in out


@pytest.mark.parametrize("argv,msg", [(["--text", ""], "empty"), (["--text", TEXT, "--attack", "x"], "unknown"),
                                      (["--text", TEXT, "--sparsity", "1.5"], "sparsity"), ([], "at least one")])
def test_cli_errors_one_line(tmp_path, capsys, argv, msg):
    d = save_tiny(tmp_path)
    assert main(["inspect", str(d), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1
