"""Python API mirroring the CLI, for notebooks and the app.

    import advviz
    m = advviz.load("models/lstm-sst2-sent-baseline-s0")
    m.predict(["a charming and often affecting journey"])   # -> <float>[N,C] probabilities
    m.evaluate("sst2-sent", split="dev")                     # -> {"accuracy", "macro_f1", "loss", "n"}
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .checkpoint import Checkpoint, load_checkpoint
from .data import load_dataset
from .evaluate import evaluate, predict_logits


class Model:
    """A loaded checkpoint: the Classifier plus its config and metrics."""

    def __init__(self, checkpoint: Checkpoint):
        self.checkpoint = checkpoint
        self.classifier = checkpoint.model
        self.config = checkpoint.config
        self.metrics = checkpoint.metrics

    @property
    def label_names(self) -> list[str]:
        return self.checkpoint.label_names

    @property
    def name(self) -> str:
        return self.checkpoint.name

    @property
    def directory(self) -> Path:
        return self.checkpoint.directory

    def predict(self, texts: list[str] | str, batch_size: int = 64) -> np.ndarray:
        """<float32>[N,C] class probabilities."""
        if isinstance(texts, str):
            texts = [texts]
        logits = predict_logits(self.classifier, list(texts), batch_size)
        return torch.softmax(torch.from_numpy(logits), -1).numpy()

    def reconstruct(self, token_reps: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor | None:
        """RAR: <long>[B,T] argmax token ids from (adversarial) token representations <float>[B,T,H],
        or None when this checkpoint has no RAR head. (Filled in by the CARL/RAR work.)"""
        return None

    def evaluate(self, dataset: str | None = None, split: str = "dev", max_examples: int | None = None,
                 data_dir=None, seed: int = 0) -> dict:
        """Accuracy, macro-F1, loss and n on a split (default: the data set it was trained on)."""
        name = dataset or self.config["data"]["name"]
        ds = load_dataset(name, split, data_dir).subset(max_examples, seed)
        return evaluate(self.classifier, ds.texts, ds.labels)


def load(directory: str | os.PathLike, device: str | torch.device = "cpu") -> Model:
    return Model(load_checkpoint(directory, device))
