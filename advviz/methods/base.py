"""What a training method / adversary is, and the pieces they share.

A method is built from a frozen config dataclass and called with a batch:

    method = FreeLB(FreeLBConfig(steps=2))
    out = method.train_step(model, batch, backward)   # one optimisation step's gradients
    delta = method.perturb(model, batch, generator)    # as an attack: <float>[B,T,D]

``backward`` is ``accelerator.backward`` (or ``Tensor.backward``): methods that need several
backward passes per step (FreeLB) call it themselves, so the Trainer stays one visible loop.
``model`` may be wrapped (DDP); ``unwrap(model)`` gives the :class:`Classifier`.

Config fields are declared with ``advviz.config.hp`` (help, choices), so the flags, the ``--help``
defaults, the presets and the app's widgets all come from one place (``advviz/config.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..models.base import Classifier, ClassifierOutput

Backward = Callable[[torch.Tensor], None]


@dataclass(frozen=True)
class MethodConfig(Config):
    """Base of every method config: fields declared with ``config.hp`` (flag, help, choices),
    validated in ``__post_init__`` (raise ``ValueError``)."""


@dataclass
class StepOutput:
    loss: torch.Tensor  # detached scalar: the objective that was back-propagated
    logits: torch.Tensor  # (B, C) clean logits, for running train accuracy
    logs: dict[str, float] = field(default_factory=dict)


def unwrap(model: nn.Module) -> Classifier:
    """The Classifier inside a DDP/Accelerate wrapper (or the model itself)."""
    while hasattr(model, "module"):
        model = model.module
    return model  # type: ignore[return-value]


def classification_loss(out: ClassifierOutput, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.logits, labels)


def labeled_rows(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """<bool>[B]: the rows of a batch that carry a label. A semi-supervised batch (a label-free
    method's, see ``Method.uses_unlabeled``) holds labelled rows and unlabeled rows, marked by
    ``batch["labeled"]``; the label of an unlabeled row is -100 and must never be read."""
    n = batch["input_ids"].shape[0]
    lab = batch.get("labeled")
    return torch.ones(n, dtype=torch.bool, device=batch["input_ids"].device) if lab is None else lab.bool()


def supervised_loss(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy over the labelled rows of the batch (0, with a graph, when there are none)."""
    lab = labeled_rows(batch)
    if not bool(lab.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[lab], batch["labels"][lab])


def kl_with_logits(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """<float>[B] KL(p ‖ q) per row, from logits (Miyato et al.'s ``kl_divergence_with_logits``)."""
    log_p = F.log_softmax(p_logits.float(), -1)
    log_q = F.log_softmax(q_logits.float(), -1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


class Method:
    """Base class. Subclasses set ``name``, ``Config`` and implement ``train_step``; adversaries
    also implement ``perturb`` (``is_attack = True``)."""

    name: ClassVar[str]
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    is_attack: ClassVar[bool] = False
    #: label-free methods (vat, uae) also learn from unlabeled text: the Trainer gives them batches
    #: with unlabeled rows (``batch["labeled"]`` False, label -100) when the run has any
    #: (``--labeled-fraction``, ``--unlabeled``); every other method sees labelled rows only.
    uses_unlabeled: ClassVar[bool] = False
    paper: ClassVar[str] = ""

    def __init__(self, config: MethodConfig | None = None):
        self.config = config if config is not None else self.Config()

    def setup(self, model: nn.Module, train_data=None, seed: int = 0) -> None:
        """Called once before training (build neighbour tables, memory banks, heads...). ``seed``
        (the run's ``--seed``) seeds every generator the method draws from; nothing reads global
        random state."""

    def extra_modules(self) -> dict[str, nn.Module]:
        """Trainable modules beyond the classifier (e.g. a RAR head): optimised and checkpointed."""
        return {}

    def plan(self, total_steps: int, steps_per_epoch: int, dataset: str | None = None) -> None:
        """Called once the run's length is known, before any model is built: resolve settings
        given relative to the run (CARL's warm start) and refuse ones the run cannot honour."""

    def metrics(self) -> dict[str, Any]:
        """Method-specific facts recorded in the checkpoint's metrics at each save (CARL: how
        many steps L_D shaped). JSON-serialisable."""
        return {}

    def on_step_end(self, model: nn.Module, step: int) -> None:
        """Called after each optimiser step (refresh neighbour tables every N steps, ...)."""

    def checkpoint_eligible(self, step: int) -> bool:
        """Whether the model after ``step`` optimiser steps is a model of this method, and so may be
        kept as the best dev checkpoint. False while a warm start is still running (CARL before
        ``carl_start``): otherwise best-dev selection can keep a pre-L_D model and call it CARL.
        The Trainer always lets the final step's evaluation through."""
        return True

    def train_step(self, model: nn.Module, batch: dict[str, torch.Tensor], backward: Backward) -> StepOutput:
        raise NotImplementedError

    def perturb(self, model: nn.Module, batch: dict[str, torch.Tensor],
                generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} is a training method, not an attack")

    def perturb_with_grad0(self, model: nn.Module, batch: dict[str, torch.Tensor],
                           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(:meth:`perturb`'s δ, the clean input gradient g0 = ∂L_C/∂E at δ = 0 when the attack
        computed it on the way, else None): the word atlas's saliency reuses g0 instead of a second
        backward pass."""
        return self.perturb(model, batch, generator), None

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors a resumed run needs to continue bit-identically (generators, memory banks,
        neighbour tables). The base class saves ``self.generator`` when there is one."""
        gen = getattr(self, "generator", None)
        return {"generator": gen.get_state()} if isinstance(gen, torch.Generator) else {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        gen = getattr(self, "generator", None)
        if "generator" in state and isinstance(gen, torch.Generator):
            gen.set_state(state["generator"])

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **self.config.to_dict()}
