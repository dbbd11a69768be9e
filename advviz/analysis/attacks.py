"""The one place an attack is built, for every analysis (inspect, robustness, projection,
reconstructions, perplexity, reports) and the app.

    method = build_attack("spgd", {"k": 5}, core)     # core: the Classifier attacked

The attack's values are its config's defaults, then the model family's preset
(``config.FAMILY_PRESETS``: the papers' ε scaled for GloVe-50d LSTMs, BiGRUs, transformers), then
``overrides`` (what the user set). ``--preset paper`` reaches here as explicit overrides
(``paper_overrides``). A training method that is not an attack, an unknown name, a value out of
range or a setting the attack does not have is one clear line (``AdvvizError``).

The one loop that attacks a data set is :func:`attack_batches`; every analysis (words, robustness,
projection, reconstruct, augment, inspection) and through them every app page goes through it, so
a page and its command give the same numbers for the same seed:

- **one generator**: ``torch.Generator().manual_seed(seed)`` is made once per call and drawn batch
  by batch in the order below; it is never reseeded per batch or per chunk. Results therefore
  depend on ``batch_size`` and on the data set as a whole only for attacks that draw from it (a
  random start: pgd with ``init_mag`` > 0, FreeLB); deterministic attacks give the same δ
  for an example whatever the texts around it;
- **one order**: batches of texts sorted by length (stable, :func:`evaluate.batches_by_length`),
  so padding stays small; each batch carries its texts' positions (``AttackedBatch.index``) and
  callers return their results in input order;
- **modes**: the classifier (and any ``also`` module, e.g. a RAR head) is put in eval mode and
  each one's own mode is restored when the loop ends — exhausted, closed or left by an exception
  (the generator's ``finally``). A caller that may stop early must close it: iterate inside
  ``with contextlib.closing(attack_batches(...)) as batches:``;
- **device**: batches are moved to the classifier's device;
- **progress**: one callback ``progress(done, total)`` after each batch (the CLI passes
  :func:`console_progress`, a tqdm bar; the app a function that moves ``st.progress``).

:func:`prepare_attack` is the one input check of attack against model (the attack's settings,
the neighbour index it reads, ``k`` against the vocabulary) and :func:`check_examples` the one
check of the examples (as many labels as texts, each a class of the model), both before any
example is attacked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterator

import torch
from tqdm.auto import tqdm

from ..config import PRESETS, method_preset
from ..errors import AdvvizError
from ..evaluate import batches_by_length
from ..methods import attacks, build_method, get_method, resolve_method
from ..methods.adversarial import NeighborMixin
from ..methods import neighbors
from ..methods.neighbors import NeighborIndex, excluded_ids, index_for
from ..methods.substitution_sets import leaning

DEFAULT_K = 15  # neighbours of the cosine index when the attack has none of its own


def build_attack(attack: str, overrides: dict | None = None, core=None):
    """The attack ``attack`` for the Classifier ``core`` (its family's preset), with ``overrides``."""
    cls = get_method(attack)
    if not cls.is_attack:
        raise AdvvizError(f"'{attack}' is a training method, not an attack; attacks: {', '.join(attacks())}")
    return build_method(attack, resolve_method(attack, getattr(core, "arch", None), overrides))


def paper_overrides(attack: str, overrides: dict | None = None) -> dict:
    """``overrides`` plus the papers' own value of every field a family preset would change."""
    defaults = get_method(attack).Config()
    touched = {k for fam in ("lstm", "bigru", "hf") for k in method_preset(attack, fam)}
    return {**{k: getattr(defaults, k) for k in touched}, **(overrides or {})}


def resolved_overrides(attack: str, overrides: dict | None = None, preset: str = "family") -> dict:
    """What to pass as ``overrides`` for ``--preset preset`` (``config.PRESETS``): the user's values
    under ``family`` (:func:`build_attack` adds the model's family preset), the papers' values under
    them under ``paper`` (:func:`paper_overrides`). The one reading of ``--preset`` for every
    command that attacks (``commands.flags.paper_or_family``) and for the report's attacks."""
    if preset not in PRESETS:
        raise AdvvizError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    return paper_overrides(attack, overrides) if preset == "paper" else dict(overrides or {})


def attach_index(method, core, cache_dir=None) -> NeighborIndex:
    """The cosine neighbour index the method (if it uses one) and the discretization share. An attack
    without neighbours of its own (pgd, fgsm, ...) needs the index only to discretize, so its k is
    capped by the vocabulary instead of refusing a small one."""
    if isinstance(method, NeighborMixin):
        k = int(method.config.k)
    else:
        words = core.embedding_matrix().shape[0] - len(excluded_ids(core.tokenizer))
        k = max(1, min(DEFAULT_K, words))
    index = index_for(core, k, "cosine", cache_dir)
    if isinstance(method, NeighborMixin):
        method.set_index(index)
    return index


def prepare_attack(model, attack: str, overrides: dict | None = None, cache_dir="auto"):
    """(method, index): the attack for ``model`` (an :class:`advviz.api.Model` or a Classifier) with
    the cosine neighbour index it reads attached — the one check of attack against model, so a
    setting the model cannot take is one line before any example is attacked. ``cache_dir``
    "auto" is the checkpoint's ``cache/`` folder (None for a model without a directory)."""
    core = getattr(model, "classifier", model)
    method = build_attack(attack, overrides, core)
    if cache_dir == "auto":
        directory = getattr(model, "directory", None)
        cache_dir = Path(directory) / "cache" if directory else None
    return method, attach_index(method, core, cache_dir)


def check_attack(model, attack: str, overrides: dict | None = None) -> dict:
    """:func:`prepare_attack` for its check alone: the resolved settings (``method.describe()``);
    the index it builds is memoised, so the attack that follows reuses it."""
    return prepare_attack(model, attack, overrides)[0].describe()


def check_examples(model, texts, labels, allow_empty: bool = False) -> tuple[list[str], list[int]]:
    """(texts, labels) as lists, after the one check of a data set to attack: as many labels as
    texts, each in the model's classes, and (unless ``allow_empty``) at least one example."""
    core = getattr(model, "classifier", model)
    texts, labels = list(texts), [int(y) for y in labels]
    if len(texts) != len(labels):
        raise AdvvizError(f"{len(texts)} texts but {len(labels)} labels")
    if not texts and not allow_empty:
        raise AdvvizError("no examples to attack (the split is empty)")
    if any(not 0 <= y < core.num_labels for y in labels):
        raise AdvvizError(f"labels must be in 0..{core.num_labels - 1}")
    return texts, labels


Progress = Callable[[int, int], None]  # progress(done, total) after each batch


class console_progress:
    """A tqdm bar as an :func:`attack_batches` progress callback (none when not ``enabled``)."""

    def __init__(self, desc: str, enabled: bool = True):
        self.desc, self.enabled, self.bar = desc, enabled, None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.desc, leave=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Clean:
    """No attack (δ = 0, nothing drawn): the clean pass of an analysis that attacks optionally."""

    def perturb(self, model, batch, generator=None) -> torch.Tensor:
        core = getattr(model, "module", model)
        ids, matrix = batch["input_ids"], core.embedding_matrix()
        return torch.zeros(*ids.shape, matrix.shape[1], dtype=matrix.dtype, device=ids.device)  # (B, T, D)

    def perturb_with_grad0(self, model, batch, generator=None) -> tuple[torch.Tensor, None]:
        return self.perturb(model, batch, generator), None


@dataclass
class AttackedBatch:
    """One batch of :func:`attack_batches`: the texts' positions ``index``, the tokenized
    ``batch`` on the device (``input_ids``, ``attention_mask``, ``labels`` attacked, ``index``),
    the perturbation ``delta`` <float>[B,T,D], ``grad0`` the attack's own clean input gradient
    ∂L_C/∂E <float>[B,T,D] (mean loss over the batch) when it computed one, else None; ``clean`` / ``adv`` / ``real``
    are computed once on first use (no gradients). An attack over substitution sets (ascc:
    ``perturb_with_sets``) also leaves ``substitutions`` = (set ids <long>[B,T,S], weights <float>[B,T,S])."""

    index: list[int]
    batch: dict
    delta: torch.Tensor
    core: object = field(repr=False)
    _clean: object = field(default=None, repr=False)
    grad0: torch.Tensor | None = field(default=None, repr=False)
    substitutions: tuple | None = field(default=None, repr=False)

    @property
    def ids(self) -> torch.Tensor:
        return self.batch["input_ids"]  # (B, T)

    @property
    def att(self) -> torch.Tensor:
        return self.batch["attention_mask"]  # (B, T)

    @property
    def labels(self) -> torch.Tensor:
        return self.batch["labels"]  # (B,)

    @property
    def clean(self):
        """The classifier's output on the original embeddings."""
        if self._clean is None:
            with torch.no_grad():
                self._clean = self.core(input_ids=self.ids, attention_mask=self.att)
        return self._clean

    @cached_property
    def adv(self):
        """The classifier's output on the adversarial embeddings E + δ."""
        with torch.no_grad():
            return self.core(inputs_embeds=self.core.embed(self.ids) + self.delta, attention_mask=self.att)

    @cached_property
    def real(self) -> torch.Tensor:
        """<bool>[B,T] the positions an attack may perturb (no specials, no padding)."""
        return self.core.perturbable_mask(self.ids, self.att).bool()


def attack_batches(model, method, texts, labels=None, *, batch_size: int = 32, seed: int = 0,
                   progress: Progress | None = None, also=()) -> Iterator[AttackedBatch]:
    """Attack ``texts`` with ``method`` (see the module docstring): yields one
    :class:`AttackedBatch` per batch. ``labels`` are the labels attacked (None: the classifier's
    own prediction on each text); ``also``: further modules kept in eval mode while it runs."""
    core = getattr(model, "classifier", model)
    texts = list(texts)
    modules = [core, *(m for m in also if m is not None)]
    modes = [m.training for m in modules]
    gen = torch.Generator().manual_seed(seed)
    done = 0
    try:
        for m in modules:
            m.eval()
        for idx, batch in batches_by_length(core, texts, batch_size):
            batch = {k: v.to(core.device) for k, v in batch.items()}
            ab = AttackedBatch(list(idx), batch, None, core)
            if labels is None:
                y = ab.clean.logits.argmax(-1)
            else:
                y = torch.tensor([int(labels[i]) for i in idx], dtype=torch.long, device=core.device)
            batch["labels"] = y  # (B,)
            batch["index"] = torch.tensor(idx, dtype=torch.long, device=core.device)  # (B,)
            with_sets = getattr(method, "perturb_with_sets", None)
            if with_sets is not None:
                ab.delta, ab.substitutions = with_sets(core, batch, gen)  # (B, T, D), ((B, T, S), (B, T, S))
            else:
                ab.delta, ab.grad0 = method.perturb_with_grad0(core, batch, gen)  # (B, T, D), (B, T, D) or None
            yield ab
            done += len(idx)
            if progress is not None:
                progress(done, len(texts))
    finally:
        for m, was_training in zip(modules, modes):
            m.train(was_training)
        close = getattr(progress, "close", None)
        if close is not None:
            close()


def discretize(ab: AttackedBatch, cos_index: NeighborIndex, l2_index: NeighborIndex, bi: torch.Tensor,
               ti: torch.Tensor) -> neighbors.Discretized:
    """The discretization of the perturbed tokens at (``bi``, ``ti``) <long>[N] of a batch, one
    rule for ``inspect``, ``words`` and the app: ``neighbors.discretize`` (the neighbour whose
    direction best matches δᵢ, SPGD Fig. 2), except for an attack over substitution sets, whose
    ``moved_to`` is the substitute with the largest weight (``substitution_sets.leaning``), its
    ``cosine`` that of δᵢ with the direction to it and its ``rank`` its place in the token's set
    (1 = first substitute in the file's order). ``nearest`` is the L2-nearest entry either way."""
    core = ab.core
    matrix = core.embedding_matrix()
    tok, delta = ab.ids[bi, ti], ab.delta[bi, ti]  # (N,), (N, D)
    d = neighbors.discretize(matrix, cos_index, l2_index, tok, delta)
    if ab.substitutions is None:
        return d
    s_ids, weights = ab.substitutions
    moved, col = leaning(s_ids[bi, ti], weights[bi, ti])  # (N,), (N,)
    m = matrix.detach().float().cpu()
    u = neighbors.neighbor_directions(m, tok.cpu(), moved.cpu()[:, None])[:, 0]  # (N, D)
    unit = delta.detach().float().cpu()
    unit = unit / unit.norm(dim=-1, keepdim=True).clamp(min=neighbors.EPS)
    return neighbors.Discretized(moved.cpu(), (u * unit).sum(-1), col.cpu(), d.nearest)


def substitution_weights(ab: AttackedBatch, b: int, t: int, vocab: list[str]) -> list[list] | None:
    """[[word, weight], ...] of the token at (b, t): its substitution set (the token first) with the
    adversary's weights, for ``inspect``'s JSON and the app's weight bars; None for other attacks."""
    if ab.substitutions is None:
        return None
    s_ids, weights = ab.substitutions
    ids, w = s_ids[b, t].tolist(), weights[b, t].float().tolist()
    return [[vocab[i], round(x, 6)] for j, (i, x) in enumerate(zip(ids, w)) if j == 0 or i != ids[0]]  # padded: the token again
