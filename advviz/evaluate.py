"""Clean evaluation: logits for texts, accuracy / macro-F1 / loss for a data set."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .models import Classifier


def batches_by_length(model: Classifier, texts: list[str], batch_size: int):
    """Yield (indices, batch) with texts sorted by length so padding stays small."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for s in range(0, len(order), batch_size):
        idx = order[s: s + batch_size]
        yield idx, model.tokenizer.batch([texts[i] for i in idx])


@torch.no_grad()
def predict_logits(model: Classifier, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """<float32>[N,C] logits in the order of ``texts``."""
    was_training = model.training
    model.eval()
    device = model.device
    out = np.zeros((len(texts), model.num_labels), dtype=np.float32)
    it = batches_by_length(model, texts, batch_size)
    if progress:
        it = tqdm(it, total=(len(texts) + batch_size - 1) // batch_size, desc="eval", leave=False)
    for idx, batch in it:
        logits = model(input_ids=batch["input_ids"].to(device),
                       attention_mask=batch["attention_mask"].to(device)).logits
        out[idx] = logits.float().cpu().numpy()
    model.train(was_training)
    return out


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_labels: int) -> float:
    f1s = []
    for c in range(num_labels):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        denom = 2 * tp + fp + fn
        f1s.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1s))


def metrics_from_logits(logits: np.ndarray, labels) -> dict:
    labels = np.asarray(labels, dtype=np.int64)
    pred = logits.argmax(-1)
    loss = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels), reduction="none").numpy()
    return {"accuracy": float(np.mean(pred == labels)) if len(labels) else float("nan"),
            "macro_f1": macro_f1(labels, pred, logits.shape[1]), "loss": float(loss.mean()) if len(labels) else float("nan"),
            "n": int(len(labels))}


def evaluate(model: Classifier, texts: list[str], labels: list[int], batch_size: int = 64,
             progress: bool = False) -> dict:
    """Accuracy, macro-F1, mean cross-entropy and n over (texts, labels)."""
    return metrics_from_logits(predict_logits(model, texts, batch_size, progress), labels)
