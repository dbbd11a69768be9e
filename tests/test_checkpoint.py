"""Checkpoints: safetensors + JSON, atomic, round-trip to identical predictions, no pickle."""

from __future__ import annotations

import json

import pytest
import torch

from advviz.storage.checkpoint import load_checkpoint, save_checkpoint
from advviz.errors import AdvvizError
from conftest import batch_for

RUN = {"data": {"name": "toy", "label_names": ["neg", "pos"]}, "method": {"name": "baseline"}}


def test_round_trip_identical_predictions(tiny_model, tmp_path):
    d = save_checkpoint(tmp_path / "ck", tiny_model, RUN, {"dev_accuracy": 0.5})
    ck = load_checkpoint(d)
    b = batch_for(tiny_model)
    torch.testing.assert_close(ck.model(**{k: b[k] for k in ("input_ids", "attention_mask")}).logits,
                               tiny_model(b["input_ids"], b["attention_mask"]).logits, rtol=0, atol=0)
    assert ck.label_names == ["neg", "pos"]
    assert ck.model.tokenizer.vocab == tiny_model.tokenizer.vocab
    cfg = json.loads((d / "config.json").read_text())
    assert {"model", "tokenizer", "versions", "data", "method"} <= set(cfg)


def test_files_are_json_and_safetensors_only(tiny_lstm, tmp_path):
    d = save_checkpoint(tmp_path / "ck", tiny_lstm, RUN, {}, [{"step": 1}])
    names = sorted(p.name for p in d.iterdir())
    assert names == ["config.json", "metrics.json", "model.safetensors", "train_log.jsonl", "vocab.txt"]
    assert not list(tmp_path.glob(".*tmp*"))  # no temp dir left behind


def test_overwrite_is_atomic_and_replaces(tiny_lstm, tmp_path):
    save_checkpoint(tmp_path / "ck", tiny_lstm, RUN, {"dev_accuracy": 0.1})
    save_checkpoint(tmp_path / "ck", tiny_lstm, RUN, {"dev_accuracy": 0.2})
    assert json.loads((tmp_path / "ck" / "metrics.json").read_text())["dev_accuracy"] == 0.2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(AdvvizError, match="not an advviz checkpoint"):
        load_checkpoint(tmp_path)


def test_truncated_weights_refused(tiny_lstm, tmp_path):
    d = save_checkpoint(tmp_path / "ck", tiny_lstm, RUN, {})
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(AdvvizError, match="unreadable or truncated"):
        load_checkpoint(d)


def test_tampered_config_refused(tiny_lstm, tmp_path):
    d = save_checkpoint(tmp_path / "ck", tiny_lstm, RUN, {})
    cfg = json.loads((d / "config.json").read_text())
    cfg["model"]["family"] = "evil"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(AdvvizError, match="does not describe a model"):
        load_checkpoint(d)
