"""Text-form adversarial examples from a RAR head (Qiu et al. 2021, §4.5 "Reconstructed adversarial
samples", Table 6): attack each sentence in embedding space, read the reconstructor's argmax at
every token of the adversarial token representations, and decode that as a new sentence.

    from advviz.api import load
    from advviz.analysis.reconstruct import reconstruct_dataset
    df = reconstruct_dataset(load("models/rar"), texts, labels, attack="pgd", judge=load("models/base"))

Columns: ``text``, ``reconstructed_text``, ``label``, ``pred`` (this model on the original text),
``pred_adv`` (this model on the adversarial embeddings), ``pred_on_reconstructed`` (this model on
the reconstructed *text*, re-tokenised), ``changed`` (some real token's id differs),
``n_changed_tokens``, ``n_tokens``, and with a judge ``judge_pred`` and
``judge_pred_on_reconstructed``.

Choices: the attack is ``attacks.build_attack`` (this model's family preset, then
``overrides``), run by ``attacks.attack_batches`` with one generator seeded by ``seed`` (the
paper used k-PGD on SST-2 dev); special positions ([CLS]/[SEP]) and
padding keep their original ids (the head is trained on real tokens only); the reconstructed ids
are decoded with the model's tokenizer (WordPiece "##" pieces are joined) and both models judge the
decoded text, so a "flip" is a flip caused by a real string. Where a reconstructed id equals the
original one, the original surface word is kept (word tokenizers), so an out-of-vocabulary word
is not rewritten as "<unk>"; a position the head *changed* to <unk> does show "<unk>".
"""

from __future__ import annotations

from contextlib import closing

import numpy as np
import torch

from ..config import default_attack
from ..errors import AdvvizError
from .attacks import attack_batches, check_examples, console_progress, prepare_attack


def _decode(tok, text: str, ids: torch.Tensor, rec: torch.Tensor) -> str:
    """Decode reconstructed ids, keeping the original surface token wherever the id is unchanged
    (so an out-of-vocabulary word the head reproduced as <unk> stays the original word; only
    positions the head changed show vocabulary strings)."""
    ids, rec = ids.tolist(), rec.tolist()
    surface = None
    if tok.kind in ("word", "char"):  # ids are tokenize(text) in order, no specials, truncated
        words = tok.tokenize(text)[: len(ids)]
        surface = words if len(words) == len(ids) else None
    out = []
    for p, (a, b) in enumerate(zip(ids, rec)):
        if b in tok.special_ids:
            continue
        out.append(surface[p] if (a == b and surface is not None) else tok.vocab[b])
    return tok.join(out)


def flip_mask(df, who: str = "self"):
    """Rows whose reconstruction differs and flips the prediction of ``who``: the RAR model itself
    (``self``) or the judge (``judge``). One definition for the CLI's counts and the app's filter."""
    if who == "judge":
        return df["changed"].astype(bool) & (df["judge_pred"] != df["judge_pred_on_reconstructed"])
    return df["changed"].astype(bool) & (df["pred"] != df["pred_on_reconstructed"])


def summarize(df) -> dict:
    """Counts for the CLI / app: how many reconstructions differ and how many flip predictions."""
    out = {"n": int(len(df)), "changed": int(df["changed"].sum()), "flips_self": int(flip_mask(df).sum()),
           "adv_flips_self": int((df["pred"] != df["pred_adv"]).sum())}
    if "judge_pred" in df:
        judge = flip_mask(df, "judge")
        out["flips_judge"] = int(judge.sum())
        out["flips_judge_from_correct"] = int((judge & (df["judge_pred"] == df["label"])).sum())
    return out


def reconstruct_dataset(model, texts: list[str], labels: list[int], attack: str = default_attack("reconstruct"),
                        overrides: dict | None = None, judge=None, batch_size: int = 32, seed: int = 0,
                        progress=False):
    """A ``pandas.DataFrame`` of RAR reconstructions under ``attack`` (see the module docstring).

    ``model`` and ``judge`` are :class:`advviz.api.Model` s; ``model`` must have a RAR head.
    ``progress``: True for a console bar, or a callback ``progress(done, total)`` (the app's bar)."""
    import pandas as pd  # optional and slow to import: loaded only when used

    if model.rar_head is None:
        raise AdvvizError(f"{model.name} has no RAR head: train it with --method rar or carl+rar")
    texts, labels = check_examples(model, texts, labels, allow_empty=True)
    core = model.classifier
    method, _ = prepare_attack(model, attack, overrides)
    tok = core.tokenizer
    report = progress if callable(progress) else console_progress("reconstruct", bool(progress))
    rows = {}
    with closing(attack_batches(core, method, texts, labels, batch_size=batch_size, seed=seed, progress=report,
                                also=(model.rar_head,))) as batches:
        for ab in batches:
            ids, att, real = ab.ids, ab.att, ab.real
            with torch.no_grad():  # specials / padding keep their ids
                rec = torch.where(real, model.reconstruct(ab.adv.tokens, att).to(ids.device), ids)
            diff = (rec != ids) & real
            for j, i in enumerate(ab.index):
                n = int(att[j].sum())
                rows[i] = {"text": texts[i], "reconstructed_text": _decode(tok, texts[i], ids[j, :n], rec[j, :n]),
                           "label": labels[i], "pred": int(ab.clean.logits[j].argmax()),
                           "pred_adv": int(ab.adv.logits[j].argmax()), "changed": bool(diff[j].any()),
                           "n_changed_tokens": int(diff[j].sum()), "n_tokens": int(real[j].sum())}
    rows = [rows[i] for i in range(len(texts))]
    df = pd.DataFrame(rows)
    if df.empty:
        cols = ["text", "reconstructed_text", "label", "pred", "pred_adv", "pred_on_reconstructed", "changed",
                "n_changed_tokens", "n_tokens"] + (["judge_pred", "judge_pred_on_reconstructed"] if judge else [])
        return pd.DataFrame(columns=cols)
    rec_texts = df["reconstructed_text"].tolist()
    df["pred_on_reconstructed"] = np.argmax(model.predict(rec_texts, batch_size), -1)
    if judge is not None:
        df["judge_pred"] = np.argmax(judge.predict(df["text"].tolist(), batch_size), -1)
        df["judge_pred_on_reconstructed"] = np.argmax(judge.predict(rec_texts, batch_size), -1)
    order = ["text", "reconstructed_text", "label", "pred", "pred_adv", "pred_on_reconstructed", "changed",
             "n_changed_tokens", "n_tokens"] + (["judge_pred", "judge_pred_on_reconstructed"] if judge else [])
    return df[order]
