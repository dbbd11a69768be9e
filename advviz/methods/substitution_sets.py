"""Word-substitution sets on a model's vocabulary: what ASCC and DNE move a token among.

``advviz.substitutions.load`` reads the sets as words (Jia et al.'s counter-fitted file, or
``--neighbors FILE``); :func:`build_table` maps them onto a tokenizer's vocabulary once per model:

    table = build_table(core.tokenizer, sets, second_order=False)
    table.ids    <long>[V, S]   row v: column 0 is v itself, then its substitutes; 0 where padded
    table.valid  <bool>[V, S]   which columns are real (column 0 always, for every id)
    table.first  <long>[V]      how many columns are v itself or a first-order substitute (DNE's
                                Dirichlet gives those α, the second-order ones α·decay)

How a word becomes a vocabulary id, the same rule for every family: a word (and each of its
substitutes) is used only when it is one vocabulary entry — the RNN families' lower-cased word
vocabulary directly, WordPiece (MiniLM) only where the whole word is one token (greedy
longest-match WordPiece returns the whole word whenever it is an entry). **A word that WordPiece
splits into several pieces is never moved**, and a substitute that would be several pieces is
dropped from the set: the convex hull is over rows of one embedding matrix, and a multi-piece
word has no single row (the ASCC and DNE references work on word vocabularies; their BERT
variants keep word-level sets in the same way). Ids that are never neighbours
(``neighbors.excluded_ids``: padding, [CLS]/[SEP], <unk>/[UNK], [unusedN]) have only themselves:
a structural token or an unknown word is never moved. A word vocabulary (LSTM, BiGRU) trained
with ascc/dne holds the substitutes of its words (``train --vocab-substitutes``, the ASCC
reference's tokenizer), so each is a member with its own row. Where a substitute is still missing
(a vocabulary built without it), it is read as ``<unk>``, so ``<unk>`` joins the set of a word with
such a substitute (once): the hull then holds every input an attack over the sets can produce
(on sst2-sent a third of textfooler-cf's successful swaps against the LSTM baseline, 267 of 793,
were to words outside its vocabulary, seen as ``<unk>``; against ASCC trained that way, 59 %). :attr:`SubstitutionTable.stats` counts how
many of the file's sets survive the mapping (recorded in the checkpoint's metrics). Measured on
the counter-fitted file (25,591 words with a substitute): MiniLM's WordPiece vocabulary keeps 14,595
words with at least one single-token substitute (mean 3.7 substitutes; 15,013 with DNE's second
order, mean 8.5); the LSTM's sst2-sent vocabulary (13,870 entries) keeps 9,765 with <unk> standing for the
substitutes it lacks (mean 3.5; second order mean 7.4; without <unk> 8,209, mean 3.1); with
``--vocab-substitutes`` (21,942 set words in the vocabulary) 19,468 words move (mean 4.8).

Second order (DNE, ``second_order=True``): the set of v is v, its substitutes, then their
substitutes (file order, each once, never v), cut at ``max_size`` columns, as DNE's reference
``CachedWordSearcher(second_order=True)`` expands it (TextDefender ``utils/dne_utils.py``).

The ``neighbors`` field (:func:`neighbors_field`) is every method's ``--neighbors`` flag: ASCC and
DNE declare the same field, so the flag is generated once from the one config source and means
the same file as ``textattack:textfooler-cf``'s (``substitutions.NEIGHBORS_FLAG``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .. import substitutions
from ..config import hp
from .base import unwrap
from .neighbors import excluded_ids
from .perturb import DropoutMasks

NEIGHBORS_HELP = ("word-substitution sets: a JSON object word -> list of substitute words, gzip or plain; "
                  f"when not given, {substitutions.DEFAULT_FILE} in the data directory (Jia et al. 2019's "
                  "counter-fitted sets)")


def neighbors_field():
    """The ``--neighbors`` field (None = the default file in the data directory)."""
    return hp(None, NEIGHBORS_HELP, flag=substitutions.NEIGHBORS_FLAG, metavar="FILE")


def detach_substitutes_field():
    """The ``--detach-substitutes`` field, shared by ASCC and DNE (one flag)."""
    return hp(False, "ascc/dne: the hull point's gradient reaches only each token's own embedding row, "
                     "not its substitutes' (the references train every member's row)")


@dataclass
class SubstitutionTable:
    ids: torch.Tensor  # <long>[V, S]
    valid: torch.Tensor  # <bool>[V, S]
    first: torch.Tensor  # <long>[V]
    stats: dict = field(default_factory=dict)

    def gather(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(set ids <long>[B,T,S], valid <bool>[B,T,S], first <long>[B,T]) for token ids <long>[B,T],
        S the largest set of the batch; positions outside ``mask`` <bool>[B,T] keep only themselves
        (never moved). The table moves to the batch's device once and stays there."""
        if self.ids.device != ids.device:
            self.ids, self.valid, self.first = self.ids.to(ids.device), self.valid.to(ids.device), self.first.to(ids.device)
        s_ids, valid, first = self.ids[ids], self.valid[ids].clone(), self.first[ids].clone()
        off = ~mask.bool()
        valid[off] = False
        valid[..., 0] = True
        first[off] = 1
        s_ids = torch.where(valid, s_ids, ids.unsqueeze(-1).expand_as(s_ids))  # padded columns: the token itself
        width = int(valid.sum(-1).max())  # members are left-packed: the batch needs no more columns
        return s_ids[..., :width], valid[..., :width], first


def build_table(tokenizer, sets: dict[str, list[str]], second_order: bool = False,
                max_size: int | None = None) -> SubstitutionTable:
    """The vocabulary's substitution table (see the module docstring). ``max_size`` caps the
    columns, the token itself included (DNE's ``nbr_num``)."""
    vocab = list(tokenizer.vocab)
    index = {w: i for i, w in enumerate(vocab)}
    never = set(excluded_ids(tokenizer))
    # a word vocabulary reads a substitute it does not hold as <unk>: that row is in the set, since it
    # is what the model sees when an attack makes that swap (WordPiece splits such a word instead)
    unk = getattr(tokenizer, "unk_id", None) if getattr(tokenizer, "kind", None) == "word" else None

    def entry(word: str) -> int | None:
        i = index.get(word)
        return None if i is None or i in never or word.startswith("##") else i

    def substitute(word: str) -> int | None:
        return unk if unk is not None and word not in index else entry(word)

    rows: dict[int, list[int]] = {}
    first: dict[int, int] = {}
    keys_in_vocab = 0
    for word, nbrs in sets.items():
        v = entry(word)
        if v is None:
            continue
        keys_in_vocab += 1
        one = [n for n in (substitute(x) for x in nbrs) if n is not None and n != v]
        row = list(dict.fromkeys(one))
        first[v] = 1 + len(row)
        if second_order:
            for x in nbrs:
                row += [n for n in (substitute(y) for y in sets.get(x, ())) if n is not None and n != v]
            row = list(dict.fromkeys(row))
        if max_size is not None:
            row = row[:max(0, max_size - 1)]
            first[v] = min(first[v], 1 + len(row))
        if row:
            rows[v] = row
    S = 1 + max((len(r) for r in rows.values()), default=0)
    V = len(vocab)
    ids = torch.arange(V).unsqueeze(1).repeat(1, S)  # (V, S): padded with the token itself
    valid = torch.zeros(V, S, dtype=torch.bool)
    valid[:, 0] = True
    first_t = torch.ones(V, dtype=torch.long)
    for v, row in rows.items():
        ids[v, 1:1 + len(row)] = torch.tensor(row)
        valid[v, 1:1 + len(row)] = True
        first_t[v] = first[v]
    with_nbrs = sum(1 for n in sets.values() if n)
    stats = {"sets": with_nbrs, "words_in_vocabulary": keys_in_vocab, "movable_tokens": len(rows),
             "mean_set_size": round(sum(len(r) for r in rows.values()) / len(rows), 3) if rows else 0.0,
             "max_set_size": S - 1}
    return SubstitutionTable(ids, valid, first_t, stats)


class SubstitutionMixin:
    """For methods over substitution sets: the table is built once per model (per tokenizer and
    file) and cached on the method; ``plan`` checks the file before any model is built, so a
    missing file is one line before training starts."""

    second_order: bool = False
    _table: SubstitutionTable | None = None
    _table_key: tuple | None = None

    def plan(self, total_steps: int, steps_per_epoch: int, dataset: str | None = None) -> None:
        substitutions.neighbors_path(self.config.neighbors or None)

    def max_set_size(self) -> int | None:
        return None

    def table_for(self, model) -> SubstitutionTable:
        core = unwrap(model)
        sets = substitutions.load(self.config.neighbors or None)  # cached per file by the loader
        key = (id(core.tokenizer), len(core.tokenizer.vocab), id(sets), self.second_order, self.max_set_size())
        if self._table is None or self._table_key != key:
            self._table = build_table(core.tokenizer, sets, self.second_order, self.max_set_size())
            self._table_key = key
        return self._table

    def setup(self, model, train_data=None, seed: int = 0) -> None:
        super().setup(model, train_data, seed)  # type: ignore[misc]
        self.table_for(model)

    def metrics(self) -> dict:
        return {"substitution_sets": dict(self._table.stats)} if self._table is not None else {}

    def hull_rows(self, model, ids: torch.Tensor, mask: torch.Tensor, masks: DropoutMasks | None = None,
                  grad: bool = False):
        """(set ids <long>[B,T,S], valid <bool>[B,T,S], first <long>[B,T], rows <float>[B,T,S,D])
        for the tokens ``ids``; positions outside ``mask`` have only themselves. ``rows`` is
        detached unless ``grad`` (training with ``masks``: a loss on the hull point then trains
        every member's embedding row, as the ASCC and DNE references do).

        ``rows[..., j, :]`` is ``embed`` of each token's j-th member. With ``masks`` (training), the
        members are embedded after ``masks.replay()`` (``Classifier.embed_members``), so every member
        is dropped out with the one mask ``embed(ids)`` draws after the same replay: dropout is linear per coordinate, so
        Σⱼ wⱼ·rows[j] is dropout(v̂) exactly, and ``embed(ids) + (Σⱼ wⱼ·rows[j] − rows[0])`` is the
        dropped-out hull point the encoder reads (δ = v̂ − E[x] added to dropout(E[x]) would leave
        the dropped coordinates at v̂ − E[x] and double the kept ones' E[x]). Without ``masks`` the
        rows are the plain embedding rows (eval mode; transformers have no dropout in ``embed``)."""
        core = unwrap(model)
        s_ids, valid, first = self.table_for(core).gather(ids, mask)
        return s_ids, valid, first, member_rows(core, s_ids, masks, grad)


def member_rows(core, s_ids: torch.Tensor, masks: DropoutMasks | None = None, grad: bool = False) -> torch.Tensor:
    """rows <float>[B,T,S,D]: ``embed`` of every member ``s_ids`` <long>[B,T,S] (see
    :meth:`SubstitutionMixin.hull_rows`); a method that backpropagates several passes through the
    rows reads them through a leaf (``dne.py``): one gather, and one scatter of the gradient into
    the table, whatever the set size."""
    if masks is None:
        return core.embedding_matrix().detach()[s_ids]  # (B, T, S, D)
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        masks.replay()
        return core.embed_members(s_ids)  # (B, T, S, D): one lookup, the step's embedding mask


def masked_softmax(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """softmax over the last axis with invalid entries exactly 0 (each row has one valid entry)."""
    return torch.softmax(logits.float().masked_fill(~valid, float("-inf")), -1)


def leaning(s_ids: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(moved_to <long>[N], 1-based column <long>[N]) for N tokens' sets (ids and weights
    <[N,S]>): the substitute with the largest weight, the token itself (column 0) excluded — the
    synonym the adversary leans to, even where the token keeps most of the weight (its ‖δᵢ‖ says
    how far it leaned). A token with no substitute gives itself and column 0."""
    w = weights[:, 1:] if weights.shape[1] > 1 else weights[:, :0]
    if w.shape[1] == 0:
        return s_ids[:, 0], torch.zeros(len(s_ids), dtype=torch.long, device=s_ids.device)
    best = w.argmax(-1)  # (N,)
    has = w.gather(1, best[:, None]).squeeze(1) > 0
    col = torch.where(has, best + 1, torch.zeros_like(best))
    return s_ids.gather(1, col[:, None]).squeeze(1), col
