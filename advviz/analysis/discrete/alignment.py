"""Where the discrete edits land on the embedding adversary's heatmap: TextAttack words aligned to
model token positions, and the share of changed words among the top-3 ‖δᵢ‖ tokens."""

from __future__ import annotations

import numpy as np

from ...config import default_attack
from ...errors import AdvvizError
from ...tokenizers import _WORD_RE, clip
from ..words import attack_tokens, cache_dir_for, model_vocab, sentence_tokens
from .textattack_env import import_textattack


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
    text = clip(text)  # what the tokenizer reads (a prefix: the spans hold for the whole text)
    kind = getattr(tokenizer, "kind", None)
    if kind == "hf":
        enc = tokenizer.hf(text, return_offsets_mapping=True, truncation=True, max_length=tokenizer.max_length)
        ids = enc["input_ids"]
        special = set(tokenizer.special_ids)
        return [None if (i in special or a == b) else (int(a), int(b))
                for i, (a, b) in zip(ids, enc["offset_mapping"])]
    if kind == "word":
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
    # optional and slow to import: loaded only when used
    from textattack.shared.utils import words_from_text

    import_textattack()
    return words_from_text(row["text"])
