"""``advviz export --format hf``: a folder ``transformers`` loads with no advviz, giving advviz's
probabilities — for imported models (as they are) and advviz's own BERT/RoBERTa-encoder models
(the [CLS] head mapped onto the stock head with an identity tanh layer: transfer.py's module doc)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import advviz
from advviz.cli import main
from advviz.models import HFEncoderClassifier
from advviz.models.transformer import minilm_path
from advviz.storage.checkpoint import save_checkpoint
from advviz.tokenizers import HFTokenizer

import hf_models
from conftest import make_tiny_bert, make_tiny_rnn
from test_hf_import import TEXTS, folder_hash
from test_hostile_cli import one_line

LABELS = ["neg", "pos"]

# transformers alone: advviz can be neither imported nor found (PYTHONPATH without the worktree, cwd elsewhere)
OUTSIDE = """
import json, sys
sys.modules["advviz"] = None  # any `import advviz` would fail
from transformers import AutoModelForSequenceClassification, pipeline
texts, out = json.loads(sys.argv[1]), {}
for folder in sys.argv[2:]:
    AutoModelForSequenceClassification.from_pretrained(folder)
    clf = pipeline("text-classification", model=folder, top_k=None, device="cpu")
    out[folder] = [{d["label"]: d["score"] for d in row} for row in clf(texts)]
print(json.dumps(out))
"""


def pipeline_scores(folders: list[Path], labels: list[str]) -> dict[Path, np.ndarray]:
    """What transformers' pipeline gives for TEXTS on each folder, in one process without advviz."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_HUB_OFFLINE"] = "1"
    run = subprocess.run([sys.executable, "-c", OUTSIDE, json.dumps(TEXTS), *map(str, folders)], capture_output=True,
                         text=True, env=env, cwd=folders[0].parent, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = json.loads(run.stdout.strip().splitlines()[-1])
    return {Path(f): np.array([[r[n] for n in labels] for r in rows[f]]) for f in rows}


def save_encoder_model(path: Path, model: HFEncoderClassifier) -> Path:
    with torch.no_grad():  # a head that is not ~0, so a wrong mapping shows in the probabilities
        model.head.weight.normal_(0, 3.0)
        model.head.bias.normal_(0, 1.0)
    return save_checkpoint(path, model, {"data": {"name": "toy", "label_names": LABELS}, "method": {"name": "spgd"}},
                           {"dev_accuracy": 0.5})


def tiny_roberta_encoder() -> HFEncoderClassifier:
    from transformers import RobertaConfig, RobertaModel

    torch.manual_seed(1)
    tok = hf_models._bpe()
    cfg = RobertaConfig(vocab_size=len(tok), max_position_embeddings=66, pad_token_id=1, bos_token_id=0,
                        eos_token_id=2, type_vocab_size=1, **hf_models.SMALL)
    return HFEncoderClassifier(RobertaModel(cfg), HFTokenizer(tok, 32), 2, 0.0, "tiny-roberta").eval()


ENCODERS = {"minilm-bert": make_tiny_bert, "roberta-encoder": lambda: tiny_roberta_encoder()}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (export folder, advviz's probabilities, the checkpoint, its hash before export), with
    the pipeline's scores of every folder from one process: {folder: scores}."""
    root, made = tmp_path_factory.mktemp("export"), {}
    for name, build in ENCODERS.items():
        ck = save_encoder_model(root / f"ck-{name}", build())
        made[name] = (root / f"hf-{name}", ck, folder_hash(ck))
    for kind in hf_models.KINDS:
        src = hf_models.save(kind, root / f"src-{kind}")
        ck = root / f"ck-{kind}"
        assert main(["import", str(src), "--out", str(ck), "--label-map", "negative=neg,positive=pos"]) == 0
        made[kind] = (root / f"hf-{kind}", ck, folder_hash(ck))
    for out, ck, _ in made.values():
        assert main(["export", str(ck), "--format", "hf", "--out", str(out)]) == 0
    return made, pipeline_scores([m[0] for m in made.values()], LABELS)


@pytest.mark.parametrize("name", list(ENCODERS))
def test_advviz_encoder_model_exports_faithfully(exported, name):
    (out, ck, before), scores = exported[0][name], exported[1]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["id2label"] == {"0": "neg", "1": "pos"} and cfg["architectures"][0].endswith("ForSequenceClassification")
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    ours = advviz.load(ck).predict(TEXTS)
    assert np.abs(ours - 0.5).max() > 0.05  # the head matters
    np.testing.assert_allclose(scores[out], ours, atol=1e-5, rtol=0)
    record = json.loads((out / "advviz-export.json").read_text())
    assert record["method"] == {"name": "spgd"} and "2^20" in record["mapping"]
    assert folder_hash(ck) == before


@pytest.mark.parametrize("kind", hf_models.KINDS)
def test_imported_model_exports_as_it_is(exported, kind):
    (out, ck, before), scores = exported[0][kind], exported[1]
    src = ck.parent / f"src-{kind}"
    np.testing.assert_allclose(scores[out], hf_models.hf_probs(src, TEXTS), atol=1e-5, rtol=0)
    np.testing.assert_allclose(scores[out], advviz.load(ck).predict(TEXTS), atol=1e-5, rtol=0)
    assert folder_hash(ck) == before


def test_what_cannot_export_is_refused(tmp_path, capsys):
    lstm = save_checkpoint(tmp_path / "lstm", make_tiny_rnn(), {"data": {"name": "x", "label_names": LABELS}}, {})
    line = one_line(capsys, ["export", lstm, "--format", "hf", "--out", tmp_path / "o"])
    assert "no transformers class holds an RNN" in line
    from transformers import DistilBertConfig, DistilBertModel

    enc = DistilBertModel(DistilBertConfig(vocab_size=30522, dim=32, n_layers=1, n_heads=2, hidden_dim=64))
    tok = HFTokenizer.from_pretrained(minilm_path(), max_length=32)
    d = save_encoder_model(tmp_path / "distil", HFEncoderClassifier(enc, tok, 2, 0.0, "tiny-distilbert"))
    assert "distilbert encoder" in one_line(capsys, ["export", d, "--format", "hf", "--out", tmp_path / "o"])
    assert not (tmp_path / "o").exists()


def test_export_never_overwrites_what_it_did_not_write(tmp_path, capsys):
    ck = save_encoder_model(tmp_path / "ck", make_tiny_bert())
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert "was not written by advviz" in one_line(capsys, ["export", ck, "--format", "hf", "--out", foreign])
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    assert "inside the advviz checkpoint" in one_line(capsys, ["export", ck, "--format", "hf", "--out", ck / "hf"])
    out = tmp_path / "hf"
    assert main(["export", str(ck), "--format", "hf", "--out", str(out)]) == 0
    assert "--overwrite" in one_line(capsys, ["export", ck, "--format", "hf", "--out", out])
    assert main(["export", str(ck), "--format", "hf", "--out", str(out), "--overwrite"]) == 0
