"""The TextAttack recipes advviz runs (:data:`RECIPES`), their builders and the offline GloVe
neighbour source of ``textfooler-glove``."""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import inspect as _inspect
import io
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ... import substitutions
from ...errors import AdvvizError
from ...models.glove import glove_paths
from . import synonym_swap, wordnet
from . import textattack_env as env
from .textattack_env import PREFIX, TEXTATTACK_BATCH_SIZE, _nltk_missing, import_textattack, is_textattack, wrapper_for

GLOVE_WORDS = 65_713  # the size of TextFooler's counter-fitted PARAGRAM-SL999 vocabulary



def recipe_of(name: str) -> str:
    """``textattack:deepwordbug`` -> ``deepwordbug`` (checked against :data:`RECIPES`)."""
    recipe = name[len(PREFIX):] if is_textattack(name) else name
    if recipe not in RECIPES:
        raise AdvvizError(f"unknown TextAttack recipe {recipe!r}; advviz runs: "
                          + ", ".join(PREFIX + r for r in RECIPES))
    return recipe


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
    if "glove" not in env._STATE:
        import pandas as pd  # optional and slow to import: loaded only when used

        emb_path, index_path = glove_paths()
        vectors = np.array(np.load(emb_path, mmap_mode="r")[:n_words], dtype=np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        words = [str(w) for w in pd.read_parquet(index_path)["index"].tolist()[:n_words]]
        w2i = {w: i for i, w in enumerate(words)}
        env._STATE["glove"] = _glove_class(ta)(vectors, w2i, dict(enumerate(words)))
    return env._STATE["glove"]


def _glove_class(ta):
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
    src = textwrap.dedent(_inspect.getsource(ta.attack_recipes.TextFoolerJin2019.build))
    for node in ast.walk(ast.parse(src)):
        if (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "stopwords" for t in node.targets)):
            return set(ast.literal_eval(node.value.args[0]))
    raise AdvvizError("could not read TextFooler's stop words from TextAttack's recipe (TextAttack changed?)")


def _build_textfooler_glove(ta, wrapper):
    # optional and slow to import: loaded only when used
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
