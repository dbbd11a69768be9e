"""Shared fixtures: tiny models of each family (CPU, milliseconds) and the real data directory."""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from advviz.models import HFEncoderClassifier, RNNClassifier
from advviz.tokenizers import HFTokenizer, WordTokenizer

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("ADVVIZ_DATA_DIR", REPO.parent / "shared" / "data"))

SENTENCES = [
    "a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "the movie is good and the acting is great",
    "the plot is dull , boring and bad",
    "a wonderful , funny film",
    "an awful waste of time",
]
LABELS = [1, 0, 1, 0, 1, 0]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.skip(f"real data not found at {DATA_DIR}")
    return DATA_DIR


def make_tiny_rnn(cell: str = "lstm", seed: int = 0, dropout: float = 0.0) -> RNNClassifier:
    torch.manual_seed(seed)
    tok = WordTokenizer.build(SENTENCES)
    return RNNClassifier(tok, 2, cell=cell, bidirectional=(cell == "gru"), embedding_dim=8, hidden_size=12,
                         mlp_hidden=6, dropout=dropout, arch="lstm" if cell == "lstm" else "bigru").eval()


def make_tiny_bert(seed: int = 0, dropout: float | None = None) -> HFEncoderClassifier:
    """A 2-layer, 32-wide BERT with MiniLM's real WordPiece tokenizer (offline). ``dropout`` sets the
    encoder's hidden and attention dropout and the head's (default: BERT's 0.1 in the encoder, none
    in the head)."""
    from transformers import BertConfig, BertModel

    from advviz.models.transformer import minilm_path

    torch.manual_seed(seed)
    tok = HFTokenizer.from_pretrained(minilm_path(), max_length=32)
    cfg = BertConfig(vocab_size=len(tok.vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64,
                     **({} if dropout is None else {"hidden_dropout_prob": dropout,
                                                    "attention_probs_dropout_prob": dropout}))
    return HFEncoderClassifier(BertModel(cfg), tok, 2, dropout=dropout or 0.0, arch="tiny-bert").eval()


@pytest.fixture
def tiny_lstm() -> RNNClassifier:
    return make_tiny_rnn("lstm")


@pytest.fixture
def tiny_gru() -> RNNClassifier:
    return make_tiny_rnn("gru")


@pytest.fixture
def tiny_bert() -> HFEncoderClassifier:
    return make_tiny_bert()


@pytest.fixture(params=["lstm", "gru", "bert"])
def tiny_model(request):
    """Every family, so contract tests run over all of them."""
    return make_tiny_bert() if request.param == "bert" else make_tiny_rnn(request.param)


def batch_for(model, texts=SENTENCES, labels=LABELS) -> dict[str, torch.Tensor]:
    b = model.tokenizer.batch(list(texts))
    b["labels"] = torch.tensor(labels[: len(texts)], dtype=torch.long)
    b["index"] = torch.arange(len(texts))
    return b


@contextmanager
def disk_full_at_rename():
    """Inside the block, renaming a temporary ``.tmp-`` directory into place fails with ENOSPC
    (the last step of every atomic directory write), as on a full disk."""
    real_rename = os.rename

    def full(src, dst):
        if ".tmp-" in str(src):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_rename(src, dst)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "rename", full)
        yield
