"""Model families behind the :class:`Classifier` contract, and how to build or rebuild them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..config import ARCH_DEFAULTS, RNN_ARCHS, Config, family_of, hp
from ..limits import MAX_DIM
from ..tokenizers import CharTokenizer, WordTokenizer
from .base import Classifier, ClassifierOutput
from .rnn import RNNClassifier
from .hf_sequence import HFSequenceClassifier
from .transformer import HFEncoderClassifier

__all__ = ["Classifier", "ClassifierOutput", "ModelOptions", "build_model", "model_from_config",
           "RNNClassifier", "HFEncoderClassifier", "HFSequenceClassifier"]


@dataclass(frozen=True)
class ModelOptions(Config):
    """Architecture options (flags of ``advviz train``). ``None`` means the family's value
    (``config.ARCH_DEFAULTS``); ``config.FAMILY_ONLY`` says which families use a flag."""

    hidden_size: int | None = hp(None, "RNN hidden size")
    embedding_dim: int | None = hp(None, "bigru embedding size (lstm uses GloVe-50d)")
    mlp_hidden: int | None = hp(None, "RNN classifier MLP width (0: no hidden layer)")
    dropout: float | None = hp(None, "dropout (RNN: embeddings and head; transformers: the [CLS] head)")
    max_length: int | None = hp(None, "tokens per text")
    max_vocab: int = hp(50000, "RNN vocabulary: at most N words")
    min_freq: int = hp(1, "RNN vocabulary: words seen at least N times")
    char: bool = hp(False, "bigru: character-level tokens")
    vocab_substitutes: str = hp("auto", "RNN word vocabulary: also the substitutes of its words in the substitution "
                                        "sets (the method's --neighbors, else the default file), so a synonym swap "
                                        "reads a word with its own row, as the ASCC reference's tokenizer; auto: "
                                        "yes for ascc/dne", choices=["auto", "yes", "no"])

    def __post_init__(self):
        super().__post_init__()  # the documented maxima (limits.MAXIMA)
        for name in ("hidden_size", "embedding_dim", "max_length"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {v}")
        for name in ("hidden_size", "embedding_dim", "mlp_hidden"):  # what a checkpoint may hold (limits.MAX_DIM)
            v = getattr(self, name)
            if v is not None and v > MAX_DIM:
                raise ValueError(f"--{name.replace('_', '-')} must be at most {MAX_DIM:,}, got {v:,}")
        if self.mlp_hidden is not None and self.mlp_hidden < 0:
            raise ValueError(f"--mlp-hidden must be >= 0 (0: no hidden layer), got {self.mlp_hidden}")
        if self.max_vocab < 3:
            raise ValueError(f"--max-vocab must be at least 3 (<pad>, <unk> and a word), got {self.max_vocab}")
        if self.min_freq < 1:
            raise ValueError(f"--min-freq must be at least 1, got {self.min_freq}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")


    def resolved(self, arch: str) -> "ModelOptions":
        """These options with every ``None`` replaced by the architecture's value."""
        fam = ARCH_DEFAULTS[family_of(arch)]
        return dataclasses.replace(self, **{k: v for k, v in fam.items() if getattr(self, k) is None})


def build_model(arch: str, train_texts: list[str], num_labels: int, opts: ModelOptions = ModelOptions(),
                seed: int = 0, extra_words=None) -> tuple[Classifier, dict]:
    """A fresh model for training. Returns (model, info) where info records e.g. GloVe coverage.
    ``extra_words``: a function of a word vocabulary giving more words it should hold
    (``WordTokenizer.build``'s ``extra``; word vocabularies only)."""
    info: dict = {}
    o = opts.resolved(arch)
    if arch in RNN_ARCHS:
        tok_cls = CharTokenizer if (o.char and arch == "bigru") else WordTokenizer
        trained: list[int] = []  # how many words the texts gave, before the extra ones

        def extra(words):
            trained.append(len(words))
            return extra_words(words)

        tok = tok_cls.build(train_texts, min_freq=o.min_freq, max_size=o.max_vocab, max_length=o.max_length,
                            extra=extra if extra_words is not None else None)
        if trained:
            info["vocab_substitutes_added"] = len(tok) - 2 - trained[0]  # <pad>, <unk>, the texts' words
        if arch == "lstm":
            from .glove import glove_matrix_for  # deferred: `advviz --help` must not load it

            matrix, found = glove_matrix_for(tok.vocab, seed=seed)
            model = RNNClassifier(tok, num_labels, "lstm", False, matrix.shape[1], o.hidden_size, o.mlp_hidden,
                                  o.dropout, "lstm")
            with torch.no_grad():
                model.embedding.weight.copy_(torch.from_numpy(matrix))
            info["glove_coverage"] = found / max(1, len(tok) - 2)  # <pad>, <unk> have no vector
        else:
            model = RNNClassifier(tok, num_labels, "gru", True, o.embedding_dim, o.hidden_size, o.mlp_hidden,
                                  o.dropout, "bigru")
        info["vocab_size"] = len(tok)
        return model, info
    model = HFEncoderClassifier.pretrained(arch, num_labels, o.max_length, o.dropout)
    return model, info


FAMILIES = {"rnn": RNNClassifier, "hf": HFEncoderClassifier, "hf-seq": HFSequenceClassifier}


def model_from_config(cfg: dict, tokenizer) -> Classifier:
    """Rebuild the architecture (random weights) from a checkpoint's model config."""
    family = cfg.get("family")
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}")
    return FAMILIES[family].from_config(cfg, tokenizer)
