"""Memory banks and negative sampling for CARL (Qiu et al. 2021, §3.2, Eq. 5; Wu et al. 2018).

Shapes: N training examples, d representation size, B batch, m negatives per example.

    bank = MemoryBank(N, d)                     rows indexed by example id (the batch's ``index``)
    bank.fill(idx, reps)                        B[i] = R_i                (initialisation pass)
    bank.update(idx, reps, momentum=M)          B[i] = M·B[i] + (1−M)·R_i (Eq. 5, exactly)
    bank.read(idx) -> <float>[..., d]           rows, L2-normalised on read
    bank.scores(v, idx) -> <float>[B, m]        v_b · read(idx)[b, j], from one product with the bank

    sampler = NegativeSampler(labels)           labels <long>[N] of the training set
    sampler.sample(anchor_labels [B], m, generator) -> <long>[B, m]   ids with a *different* label

Choices (the paper and Wu et al. leave them open):
- What a row holds: the L2-normalised sentence representation R/‖R‖ (the vectors h of Eq. 4 is
  evaluated on). Eq. 5 is applied to the stored row as written, with no renormalisation after the
  update (Wu et al.'s code renormalises on write); rows are normalised when read instead, so the
  scores are the cosine similarities either way while the stored values follow Eq. 5 exactly.
- The banks hold no gradient (``torch.no_grad``) and are training state only: they are not written
  to checkpoints (N × d floats each; a model needs none of it for inference).
- Negatives are drawn uniformly *with replacement* from the training examples whose label differs
  from the anchor's (Wu et al. draw uniformly from the whole data set; CARL's negatives are
  different-label samples by definition). The noise distribution for NCE is therefore uniform over
  that pool: P_n = 1 / |pool(y)|, reported by ``pool_size``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import AdvvizError


class MemoryBank:
    """An (N, d) table of representations, one row per training example."""

    def __init__(self, num_examples: int, dim: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32):
        self.memory = torch.zeros(num_examples, dim, device=device, dtype=dtype)
        self.filled = torch.zeros(num_examples, dtype=torch.bool, device=device)

    def __len__(self) -> int:
        return self.memory.shape[0]

    @property
    def dim(self) -> int:
        return self.memory.shape[1]

    @torch.no_grad()
    def fill(self, idx: torch.Tensor, reps: torch.Tensor) -> None:
        """Set rows: B[i] = R_i (the initialisation pass at ``--carl-start``)."""
        idx = idx.to(self.memory.device)
        self.memory[idx] = reps.detach().to(self.memory.device, self.memory.dtype)
        self.filled[idx] = True

    @torch.no_grad()
    def update(self, idx: torch.Tensor, reps: torch.Tensor, momentum: float) -> None:
        """Eq. 5: B[i] = M·B[i] + (1−M)·R_i for each i in ``idx`` (ids unique within a batch)."""
        idx = idx.to(self.memory.device)
        reps = reps.detach().to(self.memory.device, self.memory.dtype)
        self.memory[idx] = momentum * self.memory[idx] + (1.0 - momentum) * reps

    def read(self, idx: torch.Tensor) -> torch.Tensor:
        """Rows ``idx`` (any shape S) -> <float>[*S, d], L2-normalised, detached."""
        return F.normalize(self.memory[idx.to(self.memory.device)], dim=-1)

    def scores(self, anchor: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """anchor_b · read(idx)[b, j] for anchor <float>[B,d] and idx [B,m] -> <float>[B,m] (differentiable
        in ``anchor``). One product with the whole bank and a gather of B·m numbers, instead of
        gathering and normalising B·m rows of d: with CARL's m ≈ 1,600 negatives on sst2-sent the
        gather was a third of an LSTM step (docs/results.md §10). Same numbers as ``read`` up to
        rounding: each row is divided by max(‖row‖, 1e-12), as ``F.normalize`` does."""
        # a copy: autograd keeps it for ∂/∂anchor, and Eq. 5 updates the bank in place before that backward
        mem = self.memory.to(anchor.device, anchor.dtype, copy=True)
        norms = mem.norm(dim=-1).clamp_min(1e-12)  # (N,)
        return (anchor @ mem.T / norms).gather(1, idx.to(anchor.device))  # (B,N) -> (B,m)


class NegativeSampler:
    """Uniform sampling of different-label training examples (reproducible with a Generator)."""

    def __init__(self, labels: torch.Tensor | list[int]):
        labels = torch.as_tensor(labels, dtype=torch.long).cpu()
        self.labels = labels
        self.classes = sorted(int(c) for c in labels.unique())
        # pool[c] = ids of every example whose label is not c
        self.pools = {c: torch.nonzero(labels != c, as_tuple=False).view(-1) for c in self.classes}
        empty = [c for c, p in self.pools.items() if len(p) == 0]
        if empty:
            raise AdvvizError("CARL needs training examples of at least two labels (negatives are "
                              "examples with a different label)")

    def pool_size(self, anchor_labels: torch.Tensor) -> torch.Tensor:
        """<float>[B] |pool(y_i)|: the number of candidate negatives of each anchor."""
        return torch.tensor([len(self.pools[int(c)]) for c in anchor_labels.cpu()], dtype=torch.float32)

    def sample(self, anchor_labels: torch.Tensor, m: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """<long>[B, m] example ids; row i never contains an example with label ``anchor_labels[i]``.

        Draws go class by class in sorted class order, so a fixed generator state gives fixed ids.
        """
        anchor_labels = anchor_labels.cpu()
        out = torch.empty(len(anchor_labels), m, dtype=torch.long)
        for c in self.classes:
            rows = torch.nonzero(anchor_labels == c, as_tuple=False).view(-1)
            if len(rows) == 0:
                continue
            pool = self.pools[c]
            pick = torch.randint(len(pool), (len(rows), m), generator=generator)
            out[rows] = pool[pick]
        unknown = ~torch.isin(anchor_labels, torch.tensor(self.classes))
        if unknown.any():
            raise AdvvizError(f"label {int(anchor_labels[unknown][0])} is not in the training labels")
        return out
