"""Model families behind the :class:`Classifier` contract, and how to build or rebuild them."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..tokenizers import CharTokenizer, WordTokenizer
from .base import Classifier, ClassifierOutput
from .rnn import RNNClassifier
from .transformer import HFEncoderClassifier

__all__ = ["Classifier", "ClassifierOutput", "ModelOptions", "build_model", "model_from_config",
           "RNNClassifier", "HFEncoderClassifier"]


@dataclass(frozen=True)
class ModelOptions:
    """Architecture options (CLI flags of ``advviz train``). ``None`` means the family default."""

    hidden_size: int | None = None  # LSTM 256, BiGRU 200 (Bělohlávek MR setting)
    embedding_dim: int | None = None  # BiGRU only (LSTM is tied to GloVe-50d): default 200
    mlp_hidden: int | None = None  # LSTM 30 (SPGD App. B), BiGRU 256
    dropout: float | None = None  # RNN 0.5 (both papers), transformer head 0.1
    max_length: int | None = None  # tokens per text: RNN 400, transformer 128
    max_vocab: int = 50000
    min_freq: int = 1
    char: bool = False  # BiGRU: character-level tokens

    def __post_init__(self):
        for name in ("hidden_size", "embedding_dim", "max_length"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {v}")
        if self.mlp_hidden is not None and self.mlp_hidden < 0:
            raise ValueError(f"--mlp-hidden must be >= 0 (0: no hidden layer), got {self.mlp_hidden}")
        if self.max_vocab < 3:
            raise ValueError(f"--max-vocab must be at least 3 (<pad>, <unk> and a word), got {self.max_vocab}")
        if self.min_freq < 1:
            raise ValueError(f"--min-freq must be at least 1, got {self.min_freq}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")


def build_model(arch: str, train_texts: list[str], num_labels: int, opts: ModelOptions = ModelOptions(),
                seed: int = 0) -> tuple[Classifier, dict]:
    """A fresh model for training. Returns (model, info) where info records e.g. GloVe coverage."""
    info: dict = {}
    if arch in ("lstm", "bigru"):
        tok_cls = CharTokenizer if (opts.char and arch == "bigru") else WordTokenizer
        tok = tok_cls.build(train_texts, min_freq=opts.min_freq, max_size=opts.max_vocab,
                            max_length=opts.max_length or 400)
        if arch == "lstm":
            from .glove import glove_matrix_for

            matrix, found = glove_matrix_for(tok.vocab, seed=seed)
            model = RNNClassifier(tok, num_labels, "lstm", False, matrix.shape[1], opts.hidden_size or 256,
                                  30 if opts.mlp_hidden is None else opts.mlp_hidden,
                                  0.5 if opts.dropout is None else opts.dropout, "lstm")
            with torch.no_grad():
                model.embedding.weight.copy_(torch.from_numpy(matrix))
            info["glove_coverage"] = found / max(1, len(tok) - 2)  # <pad>, <unk> have no vector
        else:
            model = RNNClassifier(tok, num_labels, "gru", True, opts.embedding_dim or 200, opts.hidden_size or 200,
                                  256 if opts.mlp_hidden is None else opts.mlp_hidden,
                                  0.5 if opts.dropout is None else opts.dropout, "bigru")
        info["vocab_size"] = len(tok)
        return model, info
    model = HFEncoderClassifier.pretrained(arch, num_labels, opts.max_length or 128,
                                           0.1 if opts.dropout is None else opts.dropout)
    return model, info


FAMILIES = {"rnn": RNNClassifier, "hf": HFEncoderClassifier}


def model_from_config(cfg: dict, tokenizer) -> Classifier:
    """Rebuild the architecture (random weights) from a checkpoint's model config."""
    family = cfg.get("family")
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}")
    return FAMILIES[family].from_config(cfg, tokenizer)
