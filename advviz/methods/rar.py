"""RAR: Reconstruction from Adversarial Representations (Qiu et al. 2021, §3.3, Eq. 7), and
CARL+RAR (both extra objectives on one FreeLB run).

A reconstructor reads the adversarial *token* representations R^{adv,tok} <float>[B,T,H] (the
encoder's final hidden states under E + δ_t) and predicts every original token id:

    head(R) = LayerNorm_H → GeLU → Linear(H → E) → Linear(E → V, weight = embedding matrix, + bias)
    L_R     = mean over real tokens of CE(head(R^{adv,tok})_t, x_t)
    loss    = L_C + w_r · L_R,  w_r = 0.1                                   (Eq. 7, every step)

Choices, explicit:

- **Decoder tied to the input embeddings** (§3.3: "the second feed-forward layer's parameters are
  shared with the ALBERT Embedding Layer"): ``head.decoder.weight`` *is* the classifier's
  ``nn.Embedding.weight`` Parameter (same storage), plus its own bias of size V. The optimiser sees
  it once (the Trainer de-duplicates parameters), the checkpoint stores it once (as the
  classifier's), and loading re-ties it (``load_rar_head``). A frozen embedding stays frozen.
- **Layer order.** ``--rar-head ln-first`` (default, the order the paper's sentence lists and the
  issue specifies): LayerNorm(H) → GeLU → Linear(H→E) → decoder. ``--rar-head mlm``: ALBERT's own
  MLM head, Linear(H→E) → GeLU → LayerNorm(E) → decoder. The paper's Table 7 favours the latter:
  RAR − ALBERT = 11,813,810 − 11,685,122 = 128,688 = 768·128 + 128 (dense) + 2·128 (LayerNorm
  over E = 128) + 30,000 (decoder bias); LayerNorm over H = 768 would give 129,968. For MiniLM
  (H = E = 384) both layouts have the same parameter count; for LSTM/GRU the dense layer maps the
  RNN hidden size to the embedding size (e.g. 256 → 50 for GloVe-50d).
- **Which tokens.** L_R covers the positions adversaries perturb (``perturbable_mask``: no
  padding, no [CLS]/[SEP]); the head is evaluated at those positions only (saves a [T·B, V]
  matmul over padding). Cross-entropy is averaged over all such tokens of the batch (not per
  sentence first).
- **Per ascent step.** L_R is added on each of FreeLB's K ascent steps, on R^{adv,tok} of E + δ_t,
  weighted 1/K like L_C, from the first optimiser step. The ascent on δ uses ∂L_C/∂δ only (Eq. 1).
- **Parameters**: the head's own parameters (LayerNorm, dense, decoder bias) are what RAR adds
  (Table 7); metrics.json reports them as ``extra_parameters.rar``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AdvvizError
from ..config import hp
from .base import MethodConfig, unwrap
from .carl import CARL, CARLConfig
from .freelb import FreeLB, FreeLBConfig

HEAD_LAYOUTS = ("ln-first", "mlm")


class RARHead(nn.Module):
    """The reconstructor: <float>[..., H] -> <float>[..., V] logits over the vocabulary."""

    def __init__(self, hidden_size: int, embedding: nn.Embedding, layout: str = "ln-first"):
        super().__init__()
        if layout not in HEAD_LAYOUTS:
            raise ValueError(f"RAR head layout must be one of {HEAD_LAYOUTS}, got {layout!r}")
        vocab, emb_dim = embedding.weight.shape
        self.layout, self.hidden_size, self.embedding_dim = layout, hidden_size, emb_dim
        self.norm = nn.LayerNorm(hidden_size if layout == "ln-first" else emb_dim)
        self.act = nn.GELU()
        self.dense = nn.Linear(hidden_size, emb_dim)
        self.decoder = nn.Linear(emb_dim, vocab)
        self.tie(embedding)

    def tie(self, embedding: nn.Embedding) -> None:
        """Make ``decoder.weight`` the embedding matrix itself (same Parameter, same storage)."""
        if embedding.weight.shape != self.decoder.weight.shape:
            raise AdvvizError(f"RAR decoder {tuple(self.decoder.weight.shape)} does not match the "
                              f"embedding matrix {tuple(embedding.weight.shape)}")
        self.decoder.weight = embedding.weight

    def own_parameters(self) -> int:
        """Parameters the head adds (the tied decoder weight belongs to the classifier)."""
        return sum(p.numel() for p in self.parameters() if p is not self.decoder.weight)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.layout == "ln-first":
            x = self.dense(self.act(self.norm(tokens)))
        else:
            x = self.norm(self.act(self.dense(tokens)))
        return self.decoder(x)

    @classmethod
    def for_classifier(cls, classifier, layout: str = "ln-first") -> "RARHead":
        head = cls(classifier.hidden_size, classifier.embedding_layer(), layout)
        return head.to(classifier.device)


def reconstruction_loss(head: RARHead, tokens: torch.Tensor, input_ids: torch.Tensor,
                        mask: torch.Tensor) -> torch.Tensor:
    """L_R: CE of head(tokens) at the ``mask`` positions against ``input_ids`` (token mean)."""
    sel = mask.bool()
    if not sel.any():
        return tokens.sum() * 0.0
    logits = head(tokens[sel])  # (N_tok, V)
    return F.cross_entropy(logits.float(), input_ids[sel])


def load_rar_head(classifier, state: dict[str, torch.Tensor], layout: str = "ln-first") -> RARHead:
    """Rebuild a saved head around ``classifier``'s embedding (the decoder weight is not stored
    separately: it is the embedding matrix) and load its own tensors."""
    head = RARHead.for_classifier(classifier, layout)
    missing, unexpected = head.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "decoder.weight"]
    if missing or unexpected:
        raise AdvvizError(f"RAR head in the checkpoint does not match the model "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    head.tie(classifier.embedding_layer())  # a stored decoder.weight (if any) must not untie it
    return head.eval()


@dataclass(frozen=True)
class RARFields(MethodConfig):
    """RAR's own settings, declared once for RAR and CARL+RAR (mixed into their configs)."""

    rar_weight: float = hp(0.1, "RAR reconstruction-loss weight w_r (Eq. 7)")
    rar_head: str = hp("ln-first", "RAR head layer order: LayerNorm(H)→GeLU→Linear "
                       "(ln-first) or ALBERT's MLM head Linear→GeLU→LayerNorm(E) (mlm)",
                       choices=list(HEAD_LAYOUTS))

    def __post_init__(self):
        getattr(super(), "__post_init__", lambda: None)()  # FreeLB's / CARL's checks (next in the MRO)
        if self.rar_weight < 0:
            raise ValueError(f"--rar-weight must be >= 0, got {self.rar_weight}")
        if self.rar_head not in HEAD_LAYOUTS:
            raise ValueError(f"--rar-head must be one of {', '.join(HEAD_LAYOUTS)}, got {self.rar_head!r}")


@dataclass(frozen=True)
class RARConfig(RARFields, FreeLBConfig):
    pass


class _RARMixin:
    """The reconstruction head and its loss, for RAR and CARL+RAR."""

    head: RARHead | None = None

    def setup(self, model, train_data=None, seed: int = 0) -> None:
        super().setup(model, train_data, seed)  # FreeLB / CARL (next in the MRO)
        self.head = RARHead.for_classifier(unwrap(model), self.config.rar_head)

    def extra_modules(self) -> dict[str, nn.Module]:
        if self.head is None:
            raise AdvvizError(f"{self.name}: setup(model) must run before extra_modules()")
        return {"rar": self.head}

    def _rar_loss(self, model, batch, adv_out) -> tuple[torch.Tensor, dict]:
        core = unwrap(model)
        mask = core.perturbable_mask(batch["input_ids"], batch["attention_mask"])
        lr = reconstruction_loss(self.head, adv_out.tokens, batch["input_ids"], mask)
        return self.config.rar_weight * lr, {"rar_loss": float(lr.detach())}


class RAR(_RARMixin, FreeLB):
    name = "rar"
    Config = RARConfig
    is_attack = False
    paper = "Qiu et al. 2021, RAR (§3.3, Eq. 7) on top of FreeLB"

    def extra_loss(self, model, batch, adv_out, step):
        return self._rar_loss(model, batch, adv_out)


@dataclass(frozen=True)
class CARLRARConfig(RARFields, CARLConfig):
    pass


class CARLRAR(_RARMixin, CARL):
    """L_C + L_D + w_r·L_R: CARL's contrastive term (after ``--carl-start``) and RAR's
    reconstruction term (from the first step) on the same FreeLB adversarial examples."""

    name = "carl+rar"
    Config = CARLRARConfig
    is_attack = False
    paper = "Qiu et al. 2021, CARL (Eq. 6) + RAR (Eq. 7) on top of FreeLB"

    def extra_loss(self, model, batch, adv_out, step):
        ld, logs = CARL.extra_loss(self, model, batch, adv_out, step)
        lr, rlogs = self._rar_loss(model, batch, adv_out)
        return (lr if ld is None else ld + lr), {**logs, **rlogs}
