"""Per-occurrence records of one attack pass over a data set (:class:`TokenRecords`) and the
constants of the atlas."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

import numpy as np
import torch



CACHE_VERSION = 1
TOP_K = 3  # "among its sentence's top-3 perturbed tokens"
TOP_TARGETS = 5  # moved_to targets kept per word
FREQ_CHUNK = 1024  # training texts tokenized per batch when counting frequencies
SORT_KEYS = ("score", "count", "mean_norm", "top_share", "saliency", "frequency", "flip_share", "word",
             "delta_mean_norm", "delta_top_share")
WORD_KEYS = ("word", "count", "mean_norm", "top_share", "moved_to", "saliency", "frequency", "flip_share")
Progress = Callable[[float, str], None]


# --------------------------------------------------------------------------------------------
# per-occurrence records


@dataclass
class TokenRecords:
    """One entry per perturbable token occurrence (N) and per sentence (S); see the module doc."""

    sent: np.ndarray  # <int64>[N] sentence index (order of the texts given)
    pos: np.ndarray  # <int64>[N] position in the tokenized sentence
    token: np.ndarray  # <int64>[N] vocabulary id
    norm: np.ndarray  # <float32>[N] ‖δᵢ‖₂
    moved_to: np.ndarray  # <int64>[N] vocabulary id, −1 where norm == 0
    nearest: np.ndarray  # <int64>[N] vocabulary entry nearest (L2) to vᵢ + δᵢ
    cosine: np.ndarray  # <float32>[N] cos(δᵢ, direction to moved_to), NaN where norm == 0
    rank: np.ndarray  # <int64>[N] 1-based neighbour rank of moved_to, 0 where norm == 0
    saliency: np.ndarray  # <float32>[N] ‖∂L/∂eᵢ‖₂ at δ = 0
    top3: np.ndarray  # <bool>[N] among its sentence's 3 largest non-zero norms
    label: np.ndarray  # <int64>[S] label attacked (gold)
    pred: np.ndarray  # <int64>[S] clean prediction
    adv_pred: np.ndarray  # <int64>[S] prediction under attack
    frequency: np.ndarray | None = None  # <int64>[V] training-set count per vocabulary id

    PER_TOKEN = ("sent", "pos", "token", "norm", "moved_to", "nearest", "cosine", "rank", "saliency", "top3")
    PER_SENTENCE = ("label", "pred", "adv_pred")

    @property
    def n_sentences(self) -> int:
        return len(self.label)

    def check(self, vocab_size: int) -> None:
        """Shapes, types and ranges consistent (a cache file is validated with this before use)."""
        n, s = len(self.token), len(self.label)
        for name in self.PER_TOKEN:
            a = getattr(self, name)
            if not isinstance(a, np.ndarray) or a.shape != (n,):
                raise ValueError(f"{name}: expected shape ({n},)")
        for name in self.PER_SENTENCE:
            if getattr(self, name).shape != (s,):
                raise ValueError(f"{name}: expected shape ({s},)")
        if n and (self.sent.min() < 0 or self.sent.max() >= s):
            raise ValueError("sentence index out of range")
        for name in ("token", "nearest"):
            a = getattr(self, name)
            if n and (a.min() < 0 or a.max() >= vocab_size):
                raise ValueError(f"{name}: id out of range")
        if n and (self.moved_to.min() < -1 or self.moved_to.max() >= vocab_size):
            raise ValueError("moved_to: id out of range")
        if not (np.all(np.isfinite(self.norm)) and np.all(self.norm >= 0) and np.all(np.isfinite(self.saliency))):
            raise ValueError("norm/saliency not finite and >= 0")
        if not np.array_equal(self.moved_to < 0, self.norm == 0):
            raise ValueError("moved_to is -1 exactly where the norm is 0")
        if self.frequency is not None and (self.frequency.shape != (vocab_size,) or self.frequency.min(initial=0) < 0):
            raise ValueError("frequency: expected one non-negative count per vocabulary id")

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for f in fields(self):
            a = getattr(self, f.name)
            if a is not None:
                out[f.name] = torch.from_numpy(np.ascontiguousarray(a.astype(np.uint8) if a.dtype == bool else a))
        return out

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> "TokenRecords":
        kinds = {"norm": np.float32, "cosine": np.float32, "saliency": np.float32, "top3": bool}
        vals = {}
        for f in fields(cls):
            if f.name not in t:
                if f.name == "frequency":
                    vals[f.name] = None
                    continue
                raise ValueError(f"missing {f.name}")
            vals[f.name] = t[f.name].numpy().astype(kinds.get(f.name, np.int64))
        return cls(**vals)


def model_vocab(model) -> list[str]:
    return list(getattr(model, "classifier", model).tokenizer.vocab)
