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

from .data import align_labels, ids_mean_classes, load_dataset, training_reading
from .errors import AdvvizError
from .evaluate import evaluate, predict_logits
from .methods.rar import load_rar_head
from .storage.checkpoint import Checkpoint, load_checkpoint


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

    @property
    def rar_head(self):
        """The RAR reconstructor (``advviz.methods.rar.RARHead``) of a ``rar`` / ``carl+rar``
        checkpoint, its decoder weight re-tied to this classifier's embedding matrix; else None."""
        if not hasattr(self, "_rar_head"):
            self._rar_head = None
            state = self.checkpoint.extra_state.get("rar")
            if state is not None:
                layout = (self.config.get("method") or {}).get("rar_head", "ln-first")
                self._rar_head = load_rar_head(self.classifier, state, layout)
        return self._rar_head

    @torch.no_grad()
    def reconstruct(self, token_reps: torch.Tensor, attention_mask: torch.Tensor,
                    chunk: int = 2048) -> torch.Tensor | None:
        """RAR: <long>[B,T] argmax token ids from (adversarial) token representations <float>[B,T,H],
        or None when this checkpoint has no RAR head. Padding positions (mask 0) get the pad id;
        every attended position, [CLS]/[SEP] included, gets the head's argmax (the head was trained
        on real tokens only, so callers usually keep the original ids at special positions)."""
        head = self.rar_head
        if head is None:
            return None
        device = next(head.parameters()).device
        mask = attention_mask.to(device).bool()
        out = torch.full(mask.shape, self.classifier.tokenizer.pad_id, dtype=torch.long, device=device)
        reps = token_reps.to(device)[mask]  # (N, H) attended positions
        ids = [head(reps[s: s + chunk]).argmax(-1) for s in range(0, len(reps), chunk)]  # chunks bound N·V
        if ids:
            out[mask] = torch.cat(ids)
        return out

    def evaluate(self, dataset: str | None = None, split: str = "dev", max_examples: int | None = None,
                 data_dir=None, seed: int = 0) -> dict:
        """Accuracy, macro-F1, loss and n on a split (default: the data set it was trained on)."""
        if max_examples is not None and max_examples <= 0:
            raise AdvvizError(f"--max-examples must be positive, got {max_examples}")
        name = dataset or self.config["data"]["name"]
        ds = self.examples(name, split, data_dir).subset(max_examples, seed)
        if len(ds) == 0:
            raise AdvvizError(f"{name}/{split} has no examples to evaluate")
        return evaluate(self.classifier, ds.texts, ds.labels)

    def examples(self, dataset: str | None = None, split: str = "dev", data_dir=None):
        """A split of a data set, read as this model's training data was (:meth:`reading`), with
        its labels in this model's order (:meth:`aligned`)."""
        name = dataset or self.config["data"]["name"]
        return self.aligned(load_dataset(name, split, data_dir, **self.reading(name)), name)

    def reading(self, dataset: str) -> dict:
        """How to read ``dataset`` for this model: its training data's label column and
        ``--label-map`` when it is that data set (:func:`advviz.data.training_reading`), else {}."""
        return training_reading(self.config, dataset)

    def aligned(self, ds, dataset: str):
        """``ds`` with its labels in this model's order (matched by name; integer labels by position
        where this model's ids mean something); a data set with labels this model was not trained on
        is refused (:func:`advviz.data.align_labels`)."""
        data = self.config.get("data") or {}
        return align_labels(ds, self.label_names, self.name, dataset,
                            ids_mean_classes(data.get("name"), data.get("label_mapping")))


def load(directory: str | os.PathLike, device: str | torch.device = "cpu") -> Model:
    return Model(load_checkpoint(directory, device))
