"""The training loop on real data: loss falls, checkpoints round-trip, runs are seeded, NaN stops."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from advviz import load
from advviz.data import load_dataset
from advviz.errors import AdvvizError
from advviz.evaluate import evaluate
from advviz.methods.baseline import Baseline
from advviz.models import ModelOptions, build_model
from advviz.train import TrainConfig, Trainer

TINY = ModelOptions(hidden_size=16, mlp_hidden=8)


def _cfg(tmp_path, data_dir, **kw):
    base = dict(dataset="sst2-sent", arch="lstm", epochs=1, max_train=200, max_eval=100, batch_size=16,
                seed=0, out=str(tmp_path / "ck"), data_dir=str(data_dir), log_every=2)
    return TrainConfig(**{**base, **kw})


def test_short_run_writes_complete_checkpoint(tmp_path, data_dir):
    res = Trainer(_cfg(tmp_path, data_dir, max_steps=6, eval_every=3), model_options=TINY, progress=False).fit()
    d = res.out_dir
    metrics = json.loads((d / "metrics.json").read_text())
    assert {"dev_accuracy", "steps", "train_examples_per_s", "train_seconds", "parameters"} <= set(metrics)
    assert metrics["total_steps"] == 6
    log = [json.loads(x) for x in (d / "train_log.jsonl").read_text().splitlines()]
    assert any("dev_accuracy" in x for x in log) and any("loss" in x for x in log)
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["train"]["seed"] == 0 and cfg["data"]["label_names"] == ["negative", "positive"]
    assert cfg["method"] == {"name": "baseline"} and "torch" in cfg["versions"]


def test_same_seed_same_result(tmp_path, data_dir):
    a = Trainer(_cfg(tmp_path / "a", data_dir, max_steps=5), model_options=TINY, progress=False).fit()
    b = Trainer(_cfg(tmp_path / "b", data_dir, max_steps=5), model_options=TINY, progress=False).fit()
    assert a.metrics["dev_accuracy"] == b.metrics["dev_accuracy"]
    assert a.metrics["dev_loss"] == b.metrics["dev_loss"]


class _NaNAfter(Baseline):
    name = "baseline"

    def __init__(self, after: int):
        super().__init__()
        self.after, self.calls = after, 0

    def train_step(self, model, batch, backward):
        self.calls += 1
        out = super().train_step(model, batch, backward)
        if self.calls > self.after:
            out.loss = torch.tensor(float("nan"))
        return out


def test_nan_stops_with_clear_message_and_keeps_checkpoint(tmp_path, data_dir):
    cfg = _cfg(tmp_path, data_dir, eval_every=2)
    with pytest.raises(AdvvizError, match=r"training diverged: loss is nan or inf at step 5; the last good checkpoint"):
        Trainer(cfg, _NaNAfter(4), model_options=TINY, progress=False).fit()
    assert json.loads((tmp_path / "ck" / "metrics.json").read_text())["steps"] in (2, 4)  # best before the NaN
    load(tmp_path / "ck")  # still loadable


def _loss_before_after(cfg, opts, texts, labels):
    from accelerate.utils import set_seed

    set_seed(cfg.seed)  # the Trainer seeds the same way before building, so this is its initial model
    model0, _ = build_model(cfg.arch, load_dataset(cfg.dataset, "train", cfg.data_dir).subset(cfg.max_train, cfg.seed).texts,
                            2, opts, cfg.seed)
    before = evaluate(model0, texts, labels)["loss"]
    res = Trainer(cfg, model_options=opts, progress=False).fit()
    after = evaluate(load(res.out_dir).classifier, texts, labels)["loss"]
    return before, after, res


@pytest.mark.slow
def test_lstm_loss_falls_and_round_trips(tmp_path, data_dir):
    cfg = _cfg(tmp_path, data_dir, max_train=600, epochs=3, lr=5e-3)
    train = load_dataset("sst2-sent", "train", data_dir).subset(600, 0)
    before, after, res = _loss_before_after(cfg, ModelOptions(hidden_size=64), train.texts[:200], train.labels[:200])
    assert after < before - 0.02
    m = load(res.out_dir)
    probs1 = m.predict(train.texts[:20])
    probs2 = load(res.out_dir).predict(train.texts[:20])
    np.testing.assert_array_equal(probs1, probs2)


@pytest.mark.slow
def test_minilm_loss_falls_and_round_trips(tmp_path, data_dir):
    cfg = _cfg(tmp_path, data_dir, arch="minilm", dataset="sst2", max_train=96, max_eval=32, max_steps=12,
               batch_size=16, lr=1e-4, warmup=0.0)
    train = load_dataset("sst2", "train", data_dir).subset(96, 0)
    before, after, res = _loss_before_after(cfg, ModelOptions(), train.texts[:64], train.labels[:64])
    assert after < before
    m = load(res.out_dir)
    assert m.classifier.arch == "minilm" and m.classifier.hidden_size == 384
    np.testing.assert_array_equal(m.predict(train.texts[:8]), load(res.out_dir).predict(train.texts[:8]))
