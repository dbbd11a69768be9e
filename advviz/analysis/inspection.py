"""See what the adversary does to one text: the library function behind ``advviz inspect``.

    import advviz
    from advviz.analysis.inspection import inspect
    m = advviz.load("models/lstm-sst2-sent-baseline-s0")
    [r] = inspect(m, ["a charming and often affecting journey ."], attack="spgd")
    r["adv_pred"], [(t["token"], t["norm"], t["moved_to"]) for t in r["tokens"]]

Each result has the keys of issue #3 (``model, text, attack, pred, probs, adv_pred, adv_probs,
tokens, discretized_text, reconstructed_text``; per token ``index, token, norm, moved_to,
nearest, reconstructed``) plus ``label`` (the label attacked), ``label_names``, ``truncated``,
``n_tokens`` (of the text's first ``limits.MAX_TEXT_CHARS`` characters, what a tokenizer reads),
``n_chars`` and per token ``cosine`` (of δᵢ with the ``moved_to`` direction) and
``neighbor_rank`` (1 = ``moved_to`` is the token's nearest neighbour).

Conventions, the same for every method: ``norm`` = ‖δᵢ‖₂ (0.0 where untouched); ``moved_to`` =
the neighbour (of the token's K cosine neighbours, K = the attack's ``k`` or 15) whose unit
direction from the token has the highest cosine with δᵢ (SPGD Fig. 2, first word), null where
the norm is 0; ``nearest`` = the vocabulary entry nearest in L2 to vᵢ + δᵢ (second word);
special tokens and padding are neither shown nor perturbed. An attack over substitution sets
(``ascc``) names ``moved_to`` itself: the substitute with the largest weight (``neighbor_rank``: its
place in the token's set), and per token ``substitutions`` = [[word, weight], ...] (the token
first; null for every other attack; ``analysis.attacks.discretize``). The attack runs through
``attacks.attack_batches`` (eval mode, restored after) on the model's own prediction (or
``label``), each text on its own with a generator seeded by ``seed``; weights are never changed.

Cost per call on a warm model: the neighbour indexes are memoised per embedding matrix (and the
cosine table is cached under ``DIR/cache/``), so a call is the attack's forward/backward passes
plus a K-NN query of the sentence's tokens.
"""

from __future__ import annotations

from contextlib import closing
from typing import Any

import torch

from ..config import default_attack
from ..errors import AdvvizError
from ..limits import MAX_TEXT_CHARS
from ..methods import neighbors
from .attacks import attack_batches, discretize, prepare_attack, substitution_weights


def _check_text(text: Any, i: int) -> str:
    if not isinstance(text, str) or not text.strip():
        raise AdvvizError(f"text {i + 1} is empty")
    return text


def inspect(model, texts: list[str] | str, attack: str = default_attack("inspect"), overrides: dict | None = None,
            label: int | None = None, seed: int = 0) -> list[dict]:
    """One result dict per text (see the module docstring)."""
    if isinstance(texts, str):
        texts = [texts]
    texts = [_check_text(t, i) for i, t in enumerate(texts)]
    if not texts:
        raise AdvvizError("no text to inspect")
    core = model.classifier
    if label is not None and not 0 <= int(label) < core.num_labels:
        raise AdvvizError(f"--label must be in 0..{core.num_labels - 1}, got {label}")
    method, cos_index = prepare_attack(model, attack, overrides)
    l2_index = neighbors.index_for(core, 1, "l2")
    results = [_inspect_one(model, core, method, text, label, seed, cos_index, l2_index) for text in texts]
    neighbors.persist(cos_index)
    return results


def _inspect_one(model, core, method, text, label, seed, cos_index, l2_index) -> dict:
    """One text, attacked on its own (its own generator seeded by ``seed``): a text's result does
    not depend on the texts inspected with it, which the app's per-text cache relies on."""
    tok = core.tokenizer
    n_tokens = len(tok.encode(text))
    b = tok.batch([text])
    if not bool(core.perturbable_mask(b["input_ids"], b["attention_mask"]).any()):
        raise AdvvizError(f"text {text[:40]!r} has no tokens the adversary could perturb")
    with closing(attack_batches(core, method, [text], None if label is None else [int(label)], batch_size=1,
                                seed=seed, also=(getattr(model, "rar_head", None),))) as batches:
        ab = next(batches)
        probs = torch.softmax(ab.clean.logits.float(), -1)[0]  # (C,)
        adv = ab.adv
        adv_probs = torch.softmax(adv.logits.float(), -1)[0]  # (C,)
        ids, att, mask, delta = ab.ids, ab.att, ab.real[0], ab.delta  # (1, T), (1, T), (T,), (1, T, D)
        recon = model.reconstruct(adv.tokens, att) if hasattr(model, "reconstruct") else None  # (1, T) | None
    pred = int(probs.argmax())
    pos = mask.nonzero().flatten()  # (N,)
    d = discretize(ab, cos_index, l2_index, torch.zeros_like(pos), pos)
    norms = delta[0, pos].float().norm(dim=-1)  # (N,)
    vocab = tok.vocab
    tokens, disc_words, recon_words = [], [], []
    for j, p in enumerate(pos.tolist()):
        word = vocab[int(ids[0, p])]
        moved = norms[j] > 0
        rec = vocab[int(recon[0, p])] if recon is not None else None
        tokens.append({"index": p, "token": word, "norm": float(norms[j]),
                       "moved_to": vocab[int(d.moved_to[j])] if moved else None,
                       "nearest": vocab[int(d.nearest[j])], "reconstructed": rec,
                       "cosine": float(d.cosine[j]) if moved else None,
                       "neighbor_rank": int(d.rank[j]) if moved else None,
                       "substitutions": substitution_weights(ab, 0, p, vocab)})
        disc_words.append(tokens[-1]["moved_to"] if moved else word)
        recon_words.append(rec)
    return {"model": model.name if hasattr(model, "name") else core.arch, "text": text,
            "attack": method.describe(), "label": int(ab.labels[0]),
            "label_names": list(getattr(model, "label_names", [])),
            "pred": pred, "probs": probs.tolist(), "adv_pred": int(adv_probs.argmax()), "adv_probs": adv_probs.tolist(),
            "tokens": tokens, "discretized_text": tok.join(disc_words),
            "reconstructed_text": tok.join(recon_words) if recon is not None else None,
            "truncated": n_tokens > tok.max_length or len(text) > MAX_TEXT_CHARS, "n_tokens": n_tokens,
            "n_chars": len(text)}
