"""Shared base of the single-perturbation adversaries (AdvT-Text, FGSM, iAdvT-Text, SPGD, PGD).

Training objective (SPGD paper eq. 2–3, Miyato et al. 2017):

    L(θ) = w_clean · L_C(f(E), y) + w_adv · L_C(f(E + δ), y),      δ = stop_gradient(adversary)

with (w_clean, w_adv) = (1, λ) for AdvT/iAdvT/SPGD/PGD and (α, 1 − α) for FGSM (Bělohlávek et
al. eq. 2). One clean forward gives both L_C(f(E)) and, through ``autograd.grad(..., E)`` on the
same graph, the first input gradient g₀ = ∂L_C/∂E, so a single-step adversary costs one extra
forward and no extra backward through the parameters; multi-step adversaries (PGD, SPGD M > 1)
take their further gradients with ``autograd.grad`` on δ only. As an attack (``perturb``) the
model is left in whatever mode the caller chose (``inspect``/``eval --attack`` use eval mode) and
no parameter gradient is ever written.

Dropout in training (what each of AdvT, FGSM, iAdvT, SPGD and PGD does): ``embed`` is called
once per step and returns dropout(E) for the RNN families, so the clean pass, the gradient g₀ and
the adversarial pass all see the *same* embedding dropout mask, and the recurrent layer reads
dropout(E) + δ with δ exactly as the adversary made it (Miyato et al.'s and Sato et al.'s code
add r to the dropped-out embedding tensor of the clean pass). The dropouts after the embeddings
(the RNN head's, MiniLM's hidden/attention dropout) draw new masks on the adversarial pass, as in
that code, where the adversarial loss is a second, independent forward.

Subclasses implement ``adversary(model, ids, embeds, att, y, mask, g0, generator) -> δ <float>[B,T,D]``
(δ zero on padding/special tokens) and may use the neighbour-table mixin below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .neighbors import NeighborIndex, excluded_ids, index_for, neighbor_directions
from ..config import hp
from .base import Method, MethodConfig, StepOutput, classification_loss, unwrap
from .perturb import masked

ADV_WEIGHT_HELP = ("λ in L + λ·L_adv (advt, iadvt, spgd, pgd); for fgsm the paper's α in "
                   "α·J(x) + (1−α)·J(x+Δ)")
REFRESH_HELP = "rebuild the neighbour tables every N optimiser steps while embeddings train"


@dataclass(frozen=True)
class AdversarialConfig(MethodConfig):
    """Fields every single-perturbation adversary has; subclasses redeclare them with their own
    defaults (the CLI flag, shared by all methods, is generated from the field metadata)."""

    epsilon: float = hp(1.0, "perturbation size ε")
    adv_weight: float = hp(1.0, ADV_WEIGHT_HELP)

    def __post_init__(self):
        super().__post_init__()  # the documented maxima (limits.MAXIMA)
        if not self.epsilon > 0:
            raise ValueError(f"--epsilon must be > 0, got {self.epsilon}")
        if self.adv_weight < 0:
            raise ValueError(f"--adv-weight must be >= 0, got {self.adv_weight}")
        for name, lo in (("steps", 1), ("k", 1), ("refresh_every", 1)):
            v = getattr(self, name, None)
            if v is not None and v < lo:
                raise ValueError(f"--{name.replace('_', '-')} must be >= {lo}, got {v}")


def input_grad(model, embeds: torch.Tensor, delta: torch.Tensor, att: torch.Tensor,
               y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(∂L_C/∂δ <float>[B,T,D], loss) at E + δ, through ``autograd.grad`` on δ only."""
    with torch.enable_grad():
        d = delta.detach().requires_grad_()
        loss = classification_loss(model(inputs_embeds=embeds.detach() + d, attention_mask=att), y)
        (g,) = torch.autograd.grad(loss, d)
    return g.detach(), loss.detach()


class AdversarialMethod(Method):
    """loss = w_clean·clean + w_adv·adversarial, with δ from ``adversary``."""

    is_attack: ClassVar[bool] = True
    needs_grad0: ClassVar[bool] = True  # adversary uses ∂L/∂E at δ = 0

    def loss_weights(self) -> tuple[float, float]:
        return 1.0, float(self.config.adv_weight)

    def adversary(self, model, ids, embeds, att, y, mask, g0, generator) -> torch.Tensor:
        """δ <float>[B,T,D] for token ids <long>[B,T], embeddings E (detached), mask <bool>[B,T],
        g0 = ∂L_C/∂E at δ = 0 (or None when ``needs_grad0`` is false)."""
        raise NotImplementedError

    def _uses_grad0(self) -> bool:
        return self.needs_grad0

    def train_step(self, model, batch, backward) -> StepOutput:
        core = unwrap(model)
        ids, att, y = batch["input_ids"], batch["attention_mask"], batch["labels"]
        mask = core.perturbable_mask(ids, att)  # (B, T)
        embeds = core.embed(ids)  # (B, T, D), attached to the embedding weights
        out = model(inputs_embeds=embeds, attention_mask=att)
        clean = classification_loss(out, y)
        g0 = None
        if self._uses_grad0():
            (g0,) = torch.autograd.grad(clean, embeds, retain_graph=True)  # (B, T, D), no param grads
        delta = self.adversary(model, ids, embeds.detach(), att, y, mask, g0, getattr(self, "generator", None))
        adv = classification_loss(model(inputs_embeds=embeds + delta.detach(), attention_mask=att), y)
        w_clean, w_adv = self.loss_weights()
        loss = w_clean * clean + w_adv * adv
        backward(loss)
        logs = {"clean_loss": clean.item(), "adv_loss": adv.item(),
                "delta_norm": float(delta.flatten(1).norm(dim=1).mean())}
        return StepOutput(loss.detach(), out.logits.detach(), logs)

    def _perturb(self, model, batch, generator=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        core = unwrap(model)
        ids, att, y = batch["input_ids"], batch["attention_mask"], batch["labels"]
        mask = core.perturbable_mask(ids, att)  # (B, T)
        embeds = core.embed(ids).detach()  # (B, T, D)
        g0 = input_grad(model, embeds, torch.zeros_like(embeds), att, y)[0] if self._uses_grad0() else None
        return masked(self.adversary(model, ids, embeds, att, y, mask, g0, generator).detach(), mask), g0

    def perturb(self, model, batch, generator=None) -> torch.Tensor:
        return self._perturb(model, batch, generator)[0]

    def perturb_with_grad0(self, model, batch, generator=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self._perturb(model, batch, generator)


class NeighborMixin:
    """Neighbour tables for iAdvT/SPGD: built at ``setup`` (or lazily for an attack) and rebuilt
    every ``refresh_every`` steps while embeddings train (SPGD paper App. B: every 50 batches)."""

    _index: NeighborIndex | None = None

    def setup(self, model, train_data=None, seed: int = 0) -> None:
        core = unwrap(model)
        self._index = NeighborIndex(self.config.k, "cosine", excluded_ids(core.tokenizer)).fit(core.embedding_matrix())

    def on_step_end(self, model, step: int) -> None:
        if self._index is not None and step % self.config.refresh_every == 0:
            self.setup(model)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The embedding matrix the current tables were built from, so a resumed run uses the
        same neighbours until its next refresh (bit-identical resume)."""
        state = super().state_dict()
        if self._index is not None:
            state["neighbor_matrix"] = torch.from_numpy(self._index._matrix.copy())  # (V, D)
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        super().load_state_dict(state)
        if "neighbor_matrix" in state:
            exclude = self._index.exclude if self._index is not None else ()
            self._index = NeighborIndex(self.config.k, "cosine", exclude).fit(state["neighbor_matrix"])

    def set_index(self, index: NeighborIndex) -> None:
        self._index = index

    def directions(self, model, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(U <float>[B,T,K,D] unit directions to each token's K neighbours, zero off-mask;
        neighbour ids <long>[B,T,K], −1 off-mask)."""
        core = unwrap(model)
        if self._index is None or self._index.k != self.config.k:
            self._index = index_for(core, self.config.k)
        matrix = core.embedding_matrix().detach()  # (V, D) current embeddings
        B, T = ids.shape
        K, D = self.config.k, matrix.shape[1]
        pos = mask.bool()
        tok = ids[pos]  # (N,)
        nb = self._index.neighbors_of(tok.cpu()).to(ids.device)  # (N, K)
        U = torch.zeros(B, T, K, D, dtype=matrix.dtype, device=matrix.device)
        U[pos] = neighbor_directions(matrix, tok, nb)  # (N, K, D)
        nbr = torch.full((B, T, K), -1, dtype=torch.long, device=ids.device)
        nbr[pos] = nb
        return U, nbr
