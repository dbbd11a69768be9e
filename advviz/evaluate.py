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


# --------------------------------------------------------------------------------------------
# did the run leave chance? (the stall mark of metrics.json, the Models page and `advviz report`)

#: a run "is at chance" while its dev accuracy is within this many points of the majority class
CHANCE_MARGIN = 0.02
#: while a run has not left chance, the Trainer probes the dev accuracy this many times per run
CHANCE_PROBES = 20


def majority_share(labels) -> float:
    """The accuracy of always answering the most frequent class of ``labels``."""
    labels = np.asarray(labels, dtype=np.int64)
    return float(np.bincount(labels).max() / len(labels)) if len(labels) else float("nan")


def _dev_points(log: list[dict]) -> list[tuple[int, float]]:
    """(step, dev accuracy) of every dev evaluation and chance probe in a run's log, by step."""
    return sorted((line["step"], line.get("dev_accuracy", line.get("probe_accuracy"))) for line in log
                  if isinstance(line.get("step"), int)
                  and isinstance(line.get("dev_accuracy", line.get("probe_accuracy")), (int, float)))


def at_chance(log: list[dict], majority: float, margin: float = CHANCE_MARGIN) -> bool:
    """Whether the run's latest dev accuracy (evaluation or probe) is within ``margin`` of the
    majority share, or the run has none yet: the Trainer probes while this holds."""
    points = _dev_points(log)
    return not points or points[-1][1] <= majority + margin


def chance_record(log: list[dict], majority: float, total_steps: int, margin: float = CHANCE_MARGIN) -> dict:
    """When the run left chance for good, from the dev evaluations and chance probes in its ``log``
    (``dev_accuracy`` / ``probe_accuracy`` lines): ``left_chance_at_step`` is the first evaluation
    after the last one within ``margin`` of the majority share (a run that drifts above the bar by
    noise and falls back has not left), None when the run ended at chance. ``stalled``: it had not
    left by half of its steps — it stayed at chance for more than half of them, did not train as its
    method does, and is marked wherever it is shown. The resolution is the probe interval (a
    twentieth of the run) while the run is at chance."""
    points = _dev_points(log)
    last_at = max((s for s, a in points if a <= majority + margin), default=None)
    left = next((s for s, a in points if last_at is None or s > last_at), None)
    return {"majority_share": majority, "margin": margin, "left_chance_at_step": left,
            "stalled": left is None or left > total_steps / 2, "total_steps": total_steps}


def stall_note(metrics: dict | None) -> str:
    """'did not leave chance until step N of T' (or 'never left chance') for a stalled run; '' for
    any other run and for checkpoints written before the mark existed."""
    rec = metrics.get("chance") if isinstance(metrics, dict) else None
    if not isinstance(rec, dict) or rec.get("stalled") is not True:
        return ""
    left, total = rec.get("left_chance_at_step"), rec.get("total_steps")
    of = f" of {total}" if isinstance(total, int) else ""
    return f"did not leave chance until step {left}{of}" if isinstance(left, int) else f"never left chance ({total} steps)"
