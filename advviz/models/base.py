"""The one Classifier contract every model family implements and every adversary uses.

Shapes: B batch, T tokens, D embedding size, H representation size, V vocabulary, C classes.

    embed(input_ids <long>[B,T]) -> <float>[B,T,D]           word embeddings only (no positions);
                                                              in training mode after the family's
                                                              embedding dropout (RNNs), so δ is
                                                              added to dropout(E), never dropped
    forward_embeds(embeds [B,T,D], attention_mask [B,T]) -> ClassifierOutput
        .logits <float>[B,C], .pooled <float>[B,H], .tokens <float>[B,T,H]
    embedding_matrix() -> <float>[V,D]                        the live input-embedding weight
    tokenizer.vocab -> list[str] of length V                  row i of the matrix is vocab[i]

Adversaries perturb the output of ``embed`` and call ``forward_embeds``; nothing else of a model
is touched, so every method works with every family. ``forward_embeds`` feeds its ``embeds``
argument to the encoder unchanged (no dropout in between): the perturbation a model trains on is
exactly the δ an adversary computed and the heatmaps show (Miyato et al. 2017 and Sato et al.
2018 drop out the embeddings, then add r). A transformer's own embedding LayerNorm/dropout act
after the position embeddings are added, as in FreeLB; that is part of the encoder, not of E.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..tokenizers import TextTokenizer


@dataclass
class ClassifierOutput:
    logits: torch.Tensor  # (B, C)
    pooled: torch.Tensor  # (B, H) sentence representation ([CLS] / final RNN state)
    tokens: torch.Tensor  # (B, T, H) token representations


class Classifier(nn.Module):
    """Base class: subclasses set ``tokenizer``, ``num_labels``, ``arch_config`` and implement
    ``embedding_layer`` and ``forward_embeds``."""

    arch: str = ""
    tokenizer: TextTokenizer
    num_labels: int
    hidden_size: int  # H
    embedding_dim: int  # D
    #: set by ``load_checkpoint``: the method settings the model was trained with (``config["method"]``)
    #: and its method heads' tensors (``{"rar": {...}}``); UAE reads them to pick its label-free loss
    trained_with: dict | None = None
    extra_state: dict | None = None

    # -- contract -------------------------------------------------------------------------
    def embedding_layer(self) -> nn.Embedding:
        raise NotImplementedError

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embedding_layer()(input_ids)  # (B, T, D)

    def embed_members(self, member_ids: torch.Tensor) -> torch.Tensor:
        """<float>[B,T,S,D]: ``embed`` of S candidate tokens per position <long>[B,T,S] in one lookup,
        every member of a position under the one mask ``embed`` draws for a [B,T] batch from the
        same random state (the substitution-set methods' hull rows). No dropout here: a lookup."""
        return self.embedding_layer()(member_ids)

    def forward_embeds(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> ClassifierOutput:
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None) -> ClassifierOutput:
        """From ids or from (perturbed) embeddings; going through ``forward`` keeps DDP wrappers
        in the loop, so methods call ``model(inputs_embeds=..., attention_mask=...)``."""
        if inputs_embeds is None:
            inputs_embeds = self.embed(input_ids)
        return self.forward_embeds(inputs_embeds, attention_mask)

    def embedding_matrix(self) -> torch.Tensor:
        return self.embedding_layer().weight  # (V, D)

    def vocabulary(self) -> list[str]:
        return self.tokenizer.vocab

    def perturbable_mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """<bool>[B,T]: the positions an adversary may perturb, one policy for every family.

        Perturbable: every attended word position, *including* the unknown-word token
        (``<unk>``/``[UNK]``): it stands for a real word of the text and the model reads its
        (trained) embedding row like any other, so an adversary may move it (Miyato et al. and
        Sato et al. perturb every word position of the sequence). Never perturbed: padding and the
        structural tokens ``tokenizer.special_ids`` ([CLS], [SEP], [PAD], [MASK]), which are not
        words of the text (an LSTM has none, so per-token norms stay comparable across families).
        FreeLB's reference also perturbs [CLS]/[SEP]; see ``methods/freelb.py``."""
        special = torch.zeros_like(attention_mask, dtype=torch.bool)
        for sid in self.tokenizer.special_ids:
            special |= input_ids == sid
        return attention_mask.bool() & ~special

    # -- bookkeeping ------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        """Everything (besides weights and tokenizer files) needed to rebuild this model."""
        raise NotImplementedError

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device
