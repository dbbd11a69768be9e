"""Text-form adversarial examples as training data (``advviz augment``; used by ``advviz train
--augment FILE``): the retraining on adversarial examples that the UAE paper (Hsu et al. 2021,
data augmentation), the SPGD paper and the CARL/RAR paper suggest.

    from advviz.api import load
    from advviz.analysis.augment import augment_rows
    rows = augment_rows(load("models/base"), texts, labels, attack="spgd")

Each example is attacked in embedding space (``attacks.build_attack``: the model's family preset,
then ``overrides``; ``attacks.attack_batches``: eval mode, one generator seeded by ``seed``) and
turned back into a string:

- ``moved_to`` (default): every token the attack perturbed (‖δᵢ‖ > 0) — or, with ``token_share``
  S < 1, the ⌈S·N⌉ of them with the largest ‖δᵢ‖ (for dense attacks: PGD, AdvT, VAT, UAE move
  every token) — is replaced by its ``moved_to`` word, the neighbour (of its K cosine neighbours, K = the attack's ``k`` or 15)
  whose direction from the token best matches δᵢ — what ``advviz inspect`` shows as the first
  word, for any attack (SPGD and iAdvT perturb along exactly these directions);
- ``reconstructed``: the RAR head's reading of the adversarial token representations (CARL/RAR
  paper §4.5, as ``advviz reconstruct``); needs a ``rar`` / ``carl+rar`` checkpoint.

Tokens the attack left alone (and, for word tokenizers, every unchanged position) keep their
original surface word, so an unknown word is not rewritten as ``<unk>``; the words of a text
beyond the model's ``max_length`` are kept as they were (word tokenizers). The label of a row is
the source example's label by its name (``negative``, not 0, on sst2-sent; a file of integer labels
has the names ``0..C−1``), so ``train --augment`` reads it back with the same meaning — and a file
made for one label set is refused, not read by position, by a training set with other labels.

Columns: ``text, label, source_index`` (the example's index in the split), ``attack`` (its
name), ``changed_tokens`` (how many token positions differ from the original). Rows whose text
did not change are left out unless ``keep_unchanged``.
"""

from __future__ import annotations

from contextlib import closing
from typing import Callable

import torch

from ..config import default_attack
from ..errors import AdvvizError
from ..methods import neighbors
from ..methods.spgd import top_tokens
from ..storage.outputs import write_output

TEXT_FORMS = ("moved_to", "reconstructed")
COLUMNS = ("text", "label", "source_index", "attack", "changed_tokens")


def _clean(text: str) -> str:
    """One line of TSV: no tab, carriage return or newline inside a text."""
    return " ".join(text.replace("\t", " ").replace("\r", " ").replace("\n", " ").split())


def augment_rows(model, texts: list[str], labels: list[int], attack: str = default_attack("augment"),
                 overrides: dict | None = None,
                 text_form: str = "moved_to", indices: list[int] | None = None, batch_size: int = 32,
                 seed: int = 0, keep_unchanged: bool = False, token_share: float = 1.0,
                 progress: Callable[[int], None] | None = None) -> tuple[list[dict], dict]:
    """(rows, summary). ``model`` is an :class:`advviz.api.Model`; ``indices`` are the examples'
    indices in their split (default 0..N−1); ``token_share`` < 1 replaces (moved_to) only the
    ⌈share·N⌉ perturbed tokens of each text with the largest ‖δᵢ‖; ``progress(n)`` is called
    after each batch of n."""
    # deferred: `advviz --help` must not load it
    from .attacks import attack_batches, check_examples, prepare_attack
    from .reconstruct import _decode

    if text_form not in TEXT_FORMS:
        raise AdvvizError(f"--text-form must be one of {', '.join(TEXT_FORMS)}, got {text_form!r}")
    if not 0 < token_share <= 1:
        raise AdvvizError(f"--token-share must be in (0, 1], got {token_share}")
    if text_form == "reconstructed" and model.rar_head is None:
        raise AdvvizError(f"{model.name} has no RAR head: --text-form reconstructed needs a checkpoint trained "
                          f"with --method rar or carl+rar")
    texts, labels = check_examples(model, texts, labels, allow_empty=True)
    indices = list(range(len(texts))) if indices is None else list(indices)
    core = model.classifier
    tok = core.tokenizer
    method, index = prepare_attack(model, attack, overrides)
    names = list(model.label_names)
    out_rows: dict[int, dict] = {}
    unchanged, changed_total = 0, 0

    reported = 0

    def report(done, total):  # the caller's progress(n): n examples more
        nonlocal reported
        if progress is not None:
            progress(done - reported)
        reported = done

    with closing(attack_batches(core, method, texts, labels, batch_size=batch_size, seed=seed, progress=report,
                                also=(model.rar_head,) if text_form == "reconstructed" else ())) as batches:
        for ab in batches:
            ids, att, real, delta = ab.ids, ab.att, ab.real, ab.delta  # (B, T), (B, T), (B, T), (B, T, D)
            if text_form == "moved_to":
                norms = delta.norm(dim=-1)  # (B, T)
                moved = (norms > 0) & real
                if token_share < 1:  # only the largest perturbations of each text

                    counts = (moved.sum(1).double() * token_share).ceil().long()
                    moved = top_tokens(norms, moved, counts)
                new = ids.clone()
                if bool(moved.any()):
                    to, _, _ = neighbors.moved_to(core.embedding_matrix(), index, ids[moved], delta[moved])
                    new[moved] = to.to(ids.device)
            else:
                with torch.no_grad():
                    new = torch.where(real, model.reconstruct(ab.adv.tokens, att).to(ids.device), ids)
            diff = (new != ids) & real  # (B, T)
            for j, i in enumerate(ab.index):
                text, n, k = texts[i], int(att[j].sum()), int(diff[j].sum())
                if k == 0 and not keep_unchanged:
                    unchanged += 1
                    continue
                out = _decode(tok, text, ids[j, :n], new[j, :n])
                if tok.kind in ("word", "char"):
                    words = tok.tokenize(text)
                    if len(words) > n:  # truncated at max_length: the rest is kept as it was
                        out = tok.join([out, *words[n:]]) if tok.kind == "word" else out + tok.join(words[n:])
                changed_total += k
                out_rows[i] = {"text": _clean(out), "label": names[labels[i]], "source_index": indices[i],
                               "attack": attack, "changed_tokens": k}
    rows = [out_rows[i] for i in sorted(out_rows)]  # input order
    neighbors.persist(index)
    summary = {"n": len(texts), "written": len(rows), "unchanged_skipped": unchanged,
               "mean_changed_tokens": changed_total / max(1, len(rows)), "attack": method.describe(),
               "text_form": text_form, "token_share": token_share}
    return rows, summary


def write_tsv(path, rows: list[dict], overwrite: bool = False) -> None:
    """The rows as a TSV file with the header ``COLUMNS`` (written whole, never over a file advviz
    did not write unless ``overwrite``: ``storage.outputs``)."""
    def write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write("\t".join(COLUMNS) + "\n")
            for r in rows:
                f.write("\t".join(str(r[c]) for c in COLUMNS) + "\n")

    write_output(path, write, "--out", overwrite=overwrite)
