"""The word atlas: which words an embedding-space adversary moves across a whole data set, toward
which words, and how that compares with saliency, training frequency and another model.

    import advviz
    from advviz.analysis.words import word_atlas
    m = advviz.load("models/lstm-sst2-sent-baseline-s0")
    ds = m.examples("sst2-sent", "dev")
    atlas = word_atlas(m, ds.texts, ds.labels, "spgd", dataset="sst2-sent", split="dev")
    atlas["words"][:3], atlas["correlations"]

Two layers, so that changing ``min_count`` or the sort order never re-runs the attack:

1. :func:`attack_tokens` runs the attack over the texts in length-sorted batches of
   ``batch_size`` (one attack pass per batch, as ``advviz eval --attack``) and keeps one record
   per perturbable token occurrence (:class:`TokenRecords`): the token id, its position, ``norm``
   = ‖δᵢ‖₂, ``moved_to``, ``nearest``, ``cosine`` and neighbour ``rank`` (the conventions of
   ``advviz inspect``, :mod:`advviz.analysis.inspection`; ``moved_to`` is −1 where the norm is 0),
   ``saliency`` = ‖∂L/∂eᵢ‖₂ of the example's own cross-entropy at δ = 0, and ``top3`` (the
   occurrence is among its sentence's three largest non-zero ‖δᵢ‖, ties broken by position); and
   per sentence the label attacked, the clean and the adversarial prediction. Like ``advviz eval
   --attack`` the attack targets each example's *gold* label (eval mode, seeded generator), so the
   share of flipped predictions is eval's flip rate over the same sentences. The training-set
   count of every vocabulary entry (the checkpoint's own training split, truncated as the model
   reads it) is computed once and stored beside the records. All of it is cached on disk
   (:func:`cache_dir_for`: ``DIR/cache/words-KEY.safetensors``), keyed by the SHA-256 of the
   checkpoint's weights and config, the resolved attack settings (after the family preset), the
   seed, the batch size and the texts and labels; the key and the checkpoint hash are checked
   again on read, so a cache of weights that have changed since is recomputed, never shown.
2. :func:`aggregate` turns the records into one row per word (vocabulary token) with ``count``
   (occurrences), ``mean_norm``, ``top_share``, ``moved_to`` ([[word, count], …], most frequent
   first, at most ``top_targets``), ``saliency`` (mean), ``frequency`` (training-set count) and
   ``flip_share`` (the share of the distinct sentences containing the word whose prediction
   flips), keeping words with ``count >= min_count``, sorted by ``mean_norm × count`` (or
   ``sort``); and the Spearman correlations over those words of ``mean_norm`` with ``saliency``
   and with ``frequency``. Everything is ``numpy.bincount``/``unique`` over the records: no loop
   over sentences or over the vocabulary.

:func:`compare` adds B's ``mean_norm``/``top_share`` and the differences B − A per word (matched
by the word's string, so two tokenizers can be compared on the words they share).

The package: ``records`` (:class:`TokenRecords`, the constants), ``attack`` (the attack pass),
``frequency`` (training-set counts), ``cache`` (the disk cache), ``aggregation`` (rows per word,
comparison, the atlas JSON), ``table`` (DataFrame, CSV/JSON files). The names below are re-exported
so that ``from advviz.analysis.words import X`` keeps working.
"""

from __future__ import annotations

from .aggregation import (
    aggregate, atlas_from_records, compare, compare_atlases, pairs, sentence_tokens, sentences_of, sort_rows,
    word_atlas,
)
from .attack import atlas_key, attack_tokens, cached_records
from .cache import cache_dir_for, cache_key, cache_path, read_cache, write_cache
from .frequency import training_frequency
from .records import (
    CACHE_VERSION, FREQ_CHUNK, Progress, SORT_KEYS, TOP_K, TOP_TARGETS, TokenRecords, WORD_KEYS, model_vocab,
)
from .table import atlas_frame, write_atlas

__all__ = [
    'aggregate', 'atlas_from_records', 'compare', 'compare_atlases', 'pairs', 'sentence_tokens', 'sentences_of',
    'sort_rows', 'word_atlas', 'atlas_key', 'attack_tokens', 'cached_records', 'cache_dir_for', 'cache_key',
    'cache_path', 'read_cache', 'write_cache', 'training_frequency', 'CACHE_VERSION', 'FREQ_CHUNK', 'Progress',
    'SORT_KEYS', 'TOP_K', 'TOP_TARGETS', 'TokenRecords', 'WORD_KEYS', 'model_vocab', 'atlas_frame', 'write_atlas',
]
