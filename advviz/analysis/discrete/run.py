"""Running a recipe over a data set: per-example rows, the summary row from TextAttack's own metrics,
and the successful examples as ``advviz train --augment`` CSV."""

from __future__ import annotations

import contextlib
import csv
import io
import math
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from ... import substitutions
from ...errors import AdvvizError
from ...storage.outputs import write_output
from . import textattack_env as env
from .recipes import RECIPES, build, recipe_of
from .textattack_env import PREFIX, TEXTATTACK_BATCH_SIZE, import_textattack, textattack_version

RESULT_KINDS = ("succeeded", "failed", "skipped")
ROW_KEYS = ("name", "recipe", "clean_accuracy", "accuracy", "attack_success_rate", "mean_queries",
            "perturbed_word_share", "n", "succeeded", "failed", "skipped")
Progress = Callable[[int, int], None]  # (done, total)


# --------------------------------------------------------------------------------------------
# running


def _share(pct) -> float | None:
    try:
        v = float(pct)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else round(v / 100.0, 6)  # TextAttack rounds percentages to 2 decimals


def _kind(ta, result) -> str:
    if isinstance(result, ta.attack_results.SkippedAttackResult):
        return "skipped"
    if isinstance(result, ta.attack_results.SuccessfulAttackResult):
        return "succeeded"
    return "failed"


def example_row(ta, i: int, text: str, label: int, result) -> dict:
    """One per-example row (``--per-example``): texts, label, both predictions, the result kind, the
    queries spent and the words changed (index in TextAttack's word list, original, adversarial)."""
    orig, adv = result.original_result, result.perturbed_result
    kind = _kind(ta, result)
    changed = []
    if kind != "skipped":
        ow, aw = orig.attacked_text.words, adv.attacked_text.words
        for j in sorted(orig.attacked_text.all_words_diff(adv.attacked_text)):
            changed.append({"index": int(j), "original": ow[j], "adversarial": aw[j] if j < len(aw) else None})
    return {"index": i, "text": text, "adversarial_text": adv.attacked_text.text, "label": int(label),
            "pred": int(orig.output), "adv_pred": int(adv.output), "result": kind,
            "queries": int(result.num_queries) if kind != "skipped" else 0,
            "n_words": len(orig.attacked_text.words), "changed_words": changed}


def summarize(ta, results: list, recipe: str) -> dict:
    """The ``attacks`` row from TextAttack's own metrics over ``results``."""
    # the optional extra textattack, slow to import: loaded only when used
    from textattack.metrics import AttackQueries, AttackSuccessRate, WordsPerturbed

    noise = io.StringIO()
    with contextlib.redirect_stdout(noise), contextlib.redirect_stderr(noise), np.errstate(all="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            asr = AttackSuccessRate().calculate(results)
            words = WordsPerturbed().calculate(results)
            attacked = [r for r in results if not isinstance(r, ta.attack_results.SkippedAttackResult)]
            queries = AttackQueries().calculate(results) if attacked else {"avg_num_queries": float("nan")}
    mq = float(queries["avg_num_queries"])
    return {"name": PREFIX + recipe, "recipe": recipe, "epsilon": None,
            "clean_accuracy": _share(asr["original_accuracy"]), "accuracy": _share(asr["attack_accuracy_perc"]),
            "attack_success_rate": _share(asr["attack_success_rate"]) if attacked else None,
            "mean_queries": None if math.isnan(mq) else mq,
            "perturbed_word_share": _share(words["avg_word_perturbed_perc"]) if asr["successful_attacks"] else None,
            "n": len(results), "succeeded": int(asr["successful_attacks"]), "failed": int(asr["failed_attacks"]),
            "skipped": int(asr["skipped_attacks"])}


def run_textattack(model, texts: list[str], labels: list[int], recipe: str, *, seed: int = 0,
                   batch_size: int = TEXTATTACK_BATCH_SIZE, progress: Progress | None = None,
                   neighbors=None, data_dir=None) -> dict:
    """Attack every (text, gold label) with ``recipe``: ``{"row": ..., "per_example": [...]}`` (the
    row also carries ``seconds``, ``examples_per_second``, ``queries_per_second``, ``seed``,
    ``batch_size``, ``stopwords``, ``variant``, ``textattack_version`` and, for a recipe over
    substitution sets, ``neighbors``: the file read). Seeded (TextAttack's ``set_seed``: Python,
    NumPy and torch global generators), eval mode."""
    if len(texts) != len(labels):
        raise AdvvizError(f"{len(texts)} texts but {len(labels)} labels")
    if not texts:
        raise AdvvizError("no examples to attack")
    name = recipe_of(recipe)
    attack = build(model, name, batch_size, neighbors, data_dir)
    ta = import_textattack()
    model.classifier.eval()
    ta.shared.utils.set_seed(seed)
    results, rows = [], []
    t0 = time.perf_counter()
    noise = io.StringIO()
    for i, (text, y) in enumerate(zip(texts, labels)):
        with contextlib.redirect_stdout(noise), contextlib.redirect_stderr(noise):
            r = attack.attack(str(text), int(y))
        results.append(r)
        rows.append(example_row(ta, i, str(text), int(y), r))
        if progress is not None:
            progress(i + 1, len(texts))
    seconds = time.perf_counter() - t0
    row = summarize(ta, results, name)
    total_queries = sum(r["queries"] for r in rows)
    row.update({"seconds": seconds, "examples_per_second": len(texts) / max(seconds, 1e-9),
                "queries_per_second": total_queries / max(seconds, 1e-9), "seed": seed, "batch_size": batch_size,
                "stopwords": RECIPES[name].stopwords or env._STATE.get("stopwords"), "variant": RECIPES[name].variant,
                "textattack_version": textattack_version()})
    if RECIPES[name].uses_neighbors:
        row["neighbors"] = str(substitutions.neighbors_path(neighbors, data_dir))
    return {"row": row, "per_example": rows}


# --------------------------------------------------------------------------------------------
# successful examples as training data (advviz train --augment)

AUGMENT_COLUMNS = ("text", "label", "source_index", "attack", "changed_words")


def adversarial_rows(model, per_example: list[dict], name: str, source_index: list[int] | None = None) -> list[dict]:
    """The successful adversarial examples as ``advviz train --augment`` rows (the source example's
    gold label by its name, as ``advviz augment`` writes it: see ``analysis/augment.py``)."""
    names = list(model.label_names)
    out = []
    for r in per_example:
        if r["result"] != "succeeded":
            continue
        src = source_index[r["index"]] if source_index is not None else r["index"]
        text = " ".join(str(r["adversarial_text"]).split())
        out.append({"text": text, "label": names[r["label"]], "source_index": src,
                    "attack": name, "changed_words": len(r["changed_words"])})
    return out


def csv_text(rows: list[dict]) -> str:
    """``rows`` as CSV text with the header :data:`AUGMENT_COLUMNS`."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=AUGMENT_COLUMNS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_csv(path, rows: list[dict], overwrite: bool = False) -> None:
    """:func:`csv_text` of ``rows`` to ``path`` (written whole, never over a file advviz did not
    write unless ``overwrite``: ``storage.outputs``)."""
    write_output(path, lambda tmp: Path(tmp).write_text(csv_text(rows), encoding="utf-8", newline=""),
                 "--adversarial-csv", overwrite=overwrite)
