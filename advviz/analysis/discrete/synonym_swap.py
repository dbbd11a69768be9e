"""``textattack:textfooler-cf``: TextFooler's greedy word-swap search over word-substitution sets
(by default Jia et al. 2019's counter-fitted sets, :mod:`advviz.substitutions`), the synonym attack
that ASCC and DNE (TextDefender's benchmark) are measured against.

Kept from TextFooler (Jin et al. 2020; TextAttack's ``TextFoolerJin2019``): the greedy search with
word importance by deletion (``GreedyWordSwapWIR(wir_method="delete")``), ``RepeatModification``
(a word is swapped once), TextFooler's own stop-word set (read from TextAttack's recipe, as
``textattack:textfooler-glove`` reads it) and ``UntargetedClassification``.

Different, and why:

1. the candidates of a word are its substitution set (``--neighbors FILE``, default
   ``counterfitted_neighbors.json.gz`` from the data directory: up to 8 counter-fitted neighbours)
   instead of its 50 nearest counter-fitted PARAGRAM-SL999 vectors; a word without a set (or not in
   the file) is never moved. Candidates that TextAttack would not read back as one word (``'`` or
   ``-`` inside) are left out, so the swapped word is the word at that position;
2. no ``WordEmbeddingDistance`` (cosine ≥ 0.5): the sets already are the semantic constraint (Jia
   et al. built them from counter-fitted vectors); TextDefender removes it too;
3. at most 30 % of the words changed (``MaxWordsPerturbed(max_percent=0.3)``: ⌈0.3·n⌉ words of an
   n-word text), TextDefender's budget (``modify_ratio = 0.3`` in its ``args.py``, added in
   ``utils/textattack_utils.py``'s ``build_english_attacker``);
4. no part-of-speech constraint: the recipe's ``PartOfSpeech`` (which TextDefender keeps) tags with
   flair's ``upos-english`` model, a download. Without it a swap may change the part of speech, so
   this attack is at least as strong as the constrained one (its accuracy a lower bound of it);
5. no Universal Sentence Encoder (TensorFlow Hub, a download); TextDefender keeps it;
6. no query budget (TextDefender caps queries at 50, its ``neighbour_vocab_size``): the search runs
   to its end, as TextAttack's recipe does.

The search is deterministic: candidates are tried in the file's order and the ranking by deletion
uses no randomness.
"""

from __future__ import annotations

MAX_CHANGED_SHARE = 0.3  # TextDefender's modify_ratio
VARIANT = ("candidates from the substitution sets (--neighbors; default Jia et al.'s counter-fitted sets) instead of "
           "50 counter-fitted neighbours; no embedding-cosine, POS or USE constraint; at most 30 % of the words "
           "changed (TextDefender's budget)")


def substitution_swap(ta, sets: dict[str, list[str]]):
    """A TextAttack ``WordSwap`` whose candidates for a word are its substitution set in ``sets``
    (looked up lower-cased, returned in the word's case)."""
    from textattack.shared.utils import words_from_text
    from textattack.transformations.word_swaps.word_swap_embedding import recover_word_case

    class SubstitutionSetSwap(ta.transformations.WordSwap):
        def __init__(self, table):
            super().__init__()
            self.table = table

        def _get_replacement_words(self, word):
            out = []
            for n in self.table.get(word.lower(), ()):
                cand = recover_word_case(n, word)
                if words_from_text(cand) == [cand]:
                    out.append(cand)
            return out

        def extra_repr_keys(self):
            return []

    return SubstitutionSetSwap(sets)


def build_textfooler_cf(ta, wrapper, sets: dict[str, list[str]], stopwords: set[str]):
    """The ``textattack:textfooler-cf`` attack on ``wrapper`` over ``sets``, ``stopwords`` never
    swapped (TextFooler's, as ``advviz.analysis.discrete.textfooler_stopwords`` reads them)."""
    from textattack import Attack
    from textattack.constraints.overlap import MaxWordsPerturbed
    from textattack.constraints.pre_transformation import RepeatModification, StopwordModification
    from textattack.goal_functions import UntargetedClassification
    from textattack.search_methods import GreedyWordSwapWIR

    constraints = [RepeatModification(), StopwordModification(stopwords=stopwords),
                   MaxWordsPerturbed(max_percent=MAX_CHANGED_SHARE)]
    return Attack(UntargetedClassification(wrapper), constraints, substitution_swap(ta, sets),
                  GreedyWordSwapWIR(wir_method="delete"))

