"""RAR (Qiu et al. 2021, §3.3, Eq. 7): the tied reconstructor, L_R, checkpoints with the head,
``Model.reconstruct`` and ``reconstruct_dataset`` / ``advviz reconstruct``."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from advviz.api import Model, load
from advviz.storage.checkpoint import load_checkpoint, save_checkpoint
from advviz.errors import AdvvizError
from advviz.methods import METHODS, build_method
from advviz.methods.rar import RAR, RARConfig, RARHead, reconstruction_loss
from advviz.analysis.reconstruct import reconstruct_dataset, summarize
from conftest import LABELS, SENTENCES, batch_for, make_tiny_bert, make_tiny_rnn

TRAIN = SimpleNamespace(texts=SENTENCES, labels=LABELS)


def _train_rar(model, steps=150, lr=0.02, **cfg):
    """RAR on the fixture sentences (θ and head together, as the Trainer does)."""
    torch.manual_seed(0)
    method = RAR(RARConfig(**cfg))
    method.setup(model, TRAIN)
    params = list(model.parameters()) + list(method.extra_modules()["rar"].parameters())
    params = list({id(p): p for p in params}.values())
    opt = torch.optim.Adam(params, lr=lr)
    model.train()
    b = batch_for(model)
    for _ in range(steps):
        opt.zero_grad()
        out = method.train_step(model, b, lambda loss: loss.backward())
        opt.step()
    model.eval()
    return method, out


def _run_config(method):
    return {"data": {"name": "toy", "label_names": ["neg", "pos"]}, "method": method.describe()}


@pytest.mark.parametrize("family", ["lstm", "gru", "bert"])
def test_head_shapes_and_decoder_is_the_embedding_matrix(family):
    model = make_tiny_bert() if family == "bert" else make_tiny_rnn("lstm" if family == "lstm" else "gru")
    head = RARHead.for_classifier(model)
    emb = model.embedding_layer().weight
    assert head.decoder.weight is emb and head.decoder.weight.data_ptr() == emb.data_ptr()
    assert head.dense.in_features == model.hidden_size and head.dense.out_features == model.embedding_dim
    assert head.norm.normalized_shape == (model.hidden_size,)
    V = emb.shape[0]
    assert head.own_parameters() == 2 * model.hidden_size + (model.hidden_size + 1) * model.embedding_dim + V
    out = model(**{k: batch_for(model)[k] for k in ("input_ids", "attention_mask")})
    assert head(out.tokens).shape == (*out.tokens.shape[:2], V)
    mlm = RARHead.for_classifier(model, "mlm")
    assert mlm.norm.normalized_shape == (model.embedding_dim,)  # ALBERT's MLM head layout


def test_decoder_stays_tied_after_optimiser_steps():
    model = make_tiny_rnn("lstm")
    method, _ = _train_rar(model, steps=3)
    head = method.extra_modules()["rar"]
    assert head.decoder.weight is model.embedding_layer().weight
    torch.testing.assert_close(head.decoder.weight, model.embedding_matrix(), rtol=0, atol=0)


def test_reconstruction_loss_covers_real_tokens_only(tiny_bert):
    head = RARHead.for_classifier(tiny_bert)
    b = batch_for(tiny_bert)
    tokens = tiny_bert(b["input_ids"], b["attention_mask"]).tokens
    mask = tiny_bert.perturbable_mask(b["input_ids"], b["attention_mask"])
    loss = reconstruction_loss(head, tokens, b["input_ids"], mask)
    logits = head(tokens)
    ref = torch.nn.functional.cross_entropy(logits[mask], b["input_ids"][mask])
    torch.testing.assert_close(loss, ref)
    assert not mask[:, 0].any()  # [CLS] is not a target


@pytest.mark.parametrize("family", ["lstm", "bert"])
def test_trained_head_reconstructs_most_clean_tokens(family, tmp_path):
    model = make_tiny_bert() if family == "bert" else make_tiny_rnn("lstm")
    method, out = _train_rar(model, steps=120, rar_weight=1.0, init_mag=0.0, step_size=0.01)
    assert "rar_loss" in out.logs
    d = save_checkpoint(tmp_path / "ck", model, _run_config(method), {}, extras=method.extra_modules())
    m = load(d)
    b = batch_for(model)
    rep = m.classifier(b["input_ids"], b["attention_mask"]).tokens
    rec = m.reconstruct(rep, b["attention_mask"])
    mask = model.perturbable_mask(b["input_ids"], b["attention_mask"])
    acc = float((rec[mask] == b["input_ids"][mask]).float().mean())
    assert acc > 0.8, acc
    assert (rec[b["attention_mask"] == 0] == model.tokenizer.pad_id).all()


def test_checkpoint_round_trip_with_the_head(tmp_path):
    model = make_tiny_rnn("gru")
    method, _ = _train_rar(model, steps=2)
    head = method.extra_modules()["rar"]
    d = save_checkpoint(tmp_path / "ck", model, _run_config(method), {}, extras={"rar": head})
    ck = load_checkpoint(d)
    assert "decoder.weight" not in ck.extra_state["rar"]  # tied: stored once, as the embedding
    assert {"norm.weight", "norm.bias", "dense.weight", "dense.bias", "decoder.bias"} == set(ck.extra_state["rar"])
    m = Model(ck)
    loaded = m.rar_head
    assert loaded.decoder.weight is m.classifier.embedding_layer().weight  # re-tied
    for k, v in head.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, rtol=0, atol=0)
    b = batch_for(model)
    reps = model(b["input_ids"], b["attention_mask"]).tokens
    assert torch.equal(m.reconstruct(reps, b["attention_mask"]),
                       torch.where(b["attention_mask"].bool(), head(reps).argmax(-1), model.tokenizer.pad_id))


def test_mlm_layout_round_trips_through_the_config(tmp_path):
    model = make_tiny_bert()
    method, _ = _train_rar(model, steps=1, rar_head="mlm")
    d = save_checkpoint(tmp_path / "ck", model, _run_config(method), {}, extras=method.extra_modules())
    assert load(d).rar_head.layout == "mlm"


def test_no_head_means_none(tiny_lstm, tmp_path):
    d = save_checkpoint(tmp_path / "ck", tiny_lstm, {"data": {"name": "toy", "label_names": ["n", "p"]},
                                                     "method": {"name": "baseline"}}, {})
    m = load(d)
    b = batch_for(tiny_lstm)
    assert m.reconstruct(torch.zeros(6, b["input_ids"].shape[1], tiny_lstm.hidden_size), b["attention_mask"]) is None
    with pytest.raises(AdvvizError, match="no RAR head"):
        reconstruct_dataset(m, SENTENCES, LABELS, attack="freelb")


@pytest.mark.parametrize("attack", ["freelb", "pgd"])
def test_reconstruct_dataset_columns_and_judge(attack, tmp_path):
    if attack not in METHODS:
        pytest.skip(f"{attack} is not registered yet")
    model = make_tiny_rnn("lstm")
    method, _ = _train_rar(model, steps=30, rar_weight=1.0)
    m = load(save_checkpoint(tmp_path / "r", model, _run_config(method), {}, extras=method.extra_modules()))
    judge = load(save_checkpoint(tmp_path / "j", make_tiny_rnn("lstm", seed=3),
                                 {"data": {"name": "toy", "label_names": ["n", "p"]}, "method": {"name": "baseline"}}, {}))
    df = reconstruct_dataset(m, SENTENCES, LABELS, attack=attack, overrides={"epsilon": 5.0}, judge=judge, batch_size=4)
    assert {"text", "reconstructed_text", "label", "pred", "pred_on_reconstructed", "judge_pred",
            "judge_pred_on_reconstructed", "changed"} <= set(df.columns)
    assert len(df) == len(SENTENCES) and df["text"].tolist() == SENTENCES
    assert df["changed"].dtype == bool
    # an unchanged reconstruction decodes to the original (lower-cased) tokens
    for _, r in df[~df["changed"]].iterrows():
        assert r["reconstructed_text"] == " ".join(model.tokenizer.tokenize(r["text"]))
    # out-of-vocabulary words the head did not change keep their surface form
    oov = reconstruct_dataset(m, ["a zorblax journey"], [1], attack=attack, overrides={"epsilon": 1e-4})
    assert "zorblax" in oov["reconstructed_text"][0] or bool(oov["changed"][0])
    again = reconstruct_dataset(m, SENTENCES, LABELS, attack=attack, overrides={"epsilon": 5.0}, judge=judge, batch_size=4)
    assert df.equals(again)  # seeded attack
    s = summarize(df)
    assert s["n"] == 6 and 0 <= s["flips_judge"] <= s["changed"]


def test_cli_reconstruct(tmp_path, capsys):
    from advviz.cli import main

    model = make_tiny_rnn("lstm")
    method, _ = _train_rar(model, steps=5)
    d = save_checkpoint(tmp_path / "r", model, _run_config(method), {}, extras=method.extra_modules())
    data = tmp_path / "toy.csv"
    data.write_text("text,label\n" + "\n".join(f'"{t}",{y}' for t, y in zip(SENTENCES, LABELS)) + "\n")
    out = tmp_path / "rec.csv"
    rc = main(["reconstruct", str(d), "--dataset", str(data), "--split", "train", "--attack", "freelb",
               "--epsilon", "1.0", "--judge", str(d), "--out", str(out), "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0 and "reconstructions differ" in text and "judge" in text
    import re

    import pandas as pd

    n = int(re.search(r": (\d+) sentences attacked", text).group(1))
    assert n >= 1 and len(pd.read_csv(out)) == n
    assert main(["reconstruct", str(d), "--dataset", str(data), "--split", "train", "--attack", "rar"]) == 2


@pytest.mark.slow
def test_rar_metrics_count_the_tied_weight_once(data_dir, tmp_path):
    from advviz.train import TrainConfig, Trainer

    cfg = TrainConfig(dataset="sst2-sent", arch="lstm", method="rar", epochs=1, max_train=64, max_eval=32,
                      data_dir=str(data_dir), out=str(tmp_path / "r"))
    Trainer(cfg, build_method("rar"), progress=False).fit()
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    m = load(tmp_path / "r")
    assert metrics["extra_parameters"]["rar"] == m.rar_head.own_parameters()
    assert metrics["parameters"] == m.classifier.num_parameters() + m.rar_head.own_parameters()
