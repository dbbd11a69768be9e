"""Accuracy and representation drift under an embedding-space attack (``advviz eval --attack``).

For each ε the attack is run against the gold labels (eval mode, seeded), and reported as in the
CARL/RAR paper (Qiu et al. 2021): accuracy under attack (Table 5) and the mean cosine similarity
and mean Euclidean distance between each example's original and adversarial sentence
representation ``pooled`` ([CLS] / final RNN state; Table 4). ``flip_rate`` is the share of
examples whose predicted class changes. ``per_example`` holds index, loss, adv_loss, pred,
adv_pred, cosine and euclidean per example, in input order.
"""

from __future__ import annotations

import math
from contextlib import closing

import numpy as np
import torch.nn.functional as F

from ..errors import AdvvizError
from ..limits import check_count
from ..methods import resolve_method
from .attacks import attack_batches, build_attack, check_examples, console_progress, prepare_attack


def parse_epsilons(text: str) -> list[float]:
    """'0.02,0.075,0.1' -> [0.02, 0.075, 0.1]; one clear error for anything else."""
    out = []
    for part in str(text).split(","):
        try:
            v = float(part.strip())
        except ValueError:
            raise AdvvizError(f"--eps must be a comma-separated list of numbers like 0.02,0.075,0.1; "
                              f"got {text!r}") from None
        if not math.isfinite(v) or v < 0:
            raise AdvvizError(f"--eps values must be finite and >= 0, got {part.strip()!r}")
        out.append(v)
    check_count("list_values", len(out), "--eps (number of values)")
    return out


def _rows(core, method, texts, labels, batch_size, seed, progress):
    """One dict per example, in input order."""
    rows = []
    with closing(attack_batches(core, method, texts, labels, batch_size=batch_size, seed=seed,
                                progress=progress)) as batches:
        for ab in batches:
            clean, adv, y = ab.clean, ab.adv, ab.labels
            cos = F.cosine_similarity(clean.pooled.float(), adv.pooled.float(), dim=-1)  # (B,)
            euc = (clean.pooled.float() - adv.pooled.float()).norm(dim=-1)  # (B,)
            loss = F.cross_entropy(clean.logits.float(), y, reduction="none")  # (B,)
            adv_loss = F.cross_entropy(adv.logits.float(), y, reduction="none")  # (B,)
            for j, i in enumerate(ab.index):
                rows.append({"index": i, "loss": float(loss[j]), "adv_loss": float(adv_loss[j]),
                             "pred": int(clean.logits[j].argmax()), "adv_pred": int(adv.logits[j].argmax()),
                             "cosine": float(cos[j]), "euclidean": float(euc[j])})
    return sorted(rows, key=lambda r: r["index"])


def evaluate_under_attack(model, texts, labels, attack: str, overrides: dict | None = None,
                          epsilons: list[float] | None = None, batch_size: int = 32, seed: int = 0,
                          progress: bool = False) -> list[dict]:
    """One dict per ε: name, epsilon, accuracy, cosine, euclidean, flip_rate, per_example."""
    core = getattr(model, "classifier", model)
    texts, labels = check_examples(core, texts, labels)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if not hasattr(build_attack(attack, overrides, core).config, "epsilon"):
        # ascc: the substitution sets bound each token's move, there is no ε to sweep
        raise AdvvizError(f"--attack {attack} has no ε (its perturbation is bounded by the word-substitution "
                          f"sets): accuracy over ε does not apply; see it with advviz inspect / words")
    if epsilons is None:
        epsilons = [build_attack(attack, overrides, core).config.epsilon]
    results = []
    for eps in epsilons:
        method, _ = prepare_attack(core, attack, {**overrides, "epsilon": eps}, cache_dir=None)
        rows = _rows(core, method, texts, labels, batch_size, seed, console_progress(f"{attack} ε={eps}", progress))
        y = np.array(labels)
        pred = np.array([r["pred"] for r in rows])
        adv_pred = np.array([r["adv_pred"] for r in rows])
        results.append({**method.describe(), "epsilon": float(eps),
                        "clean_accuracy": float(np.mean(pred == y)),
                        "accuracy": float(np.mean(adv_pred == y)),
                        "cosine": float(np.mean([r["cosine"] for r in rows])),
                        "euclidean": float(np.mean([r["euclidean"] for r in rows])),
                        "flip_rate": float(np.mean(adv_pred != pred)), "n": len(rows), "per_example": rows})
    return results


#: the ε grid of ``advviz eval --attack`` without ``--eps`` and of the Robustness page, as multiples
#: of the ε that suits the model (:func:`default_epsilons`)
EPSILON_FACTORS = (0.5, 1.0, 2.0)


def default_epsilons(attack: str, overrides: dict | None, chosen: list[str], rows: list[dict]) -> list[float]:
    """Half, once and twice an ε that suits the models ``chosen`` (registry rows ``rows``): the one
    the user set, else the ε a chosen model was trained with under this same method (the scale its
    embeddings were hardened at), else the attack's default after the first chosen model's family
    preset (so a GloVe LSTM is not first attacked at the paper's SPGD ε 25). The one grid of both
    ``advviz eval --attack`` without ``--eps`` and the Robustness page, so both show the same ε."""
    by_name = {r.get("name"): r for r in rows}
    e = (overrides or {}).get("epsilon")
    if e is None:
        trained = [by_name.get(n, {}).get("epsilon") for n in chosen if by_name.get(n, {}).get("method") == attack]
        e = next((float(t) for t in trained if isinstance(t, (int, float)) and t > 0), None)
    if e is None:
        arch = next((by_name[n].get("arch") for n in chosen if n in by_name), None)
        e = resolve_method(attack, arch).get("epsilon", 0.0)
    e = float(e) if e else 1.0
    return [e * f for f in EPSILON_FACTORS]
