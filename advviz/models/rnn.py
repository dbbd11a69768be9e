"""Recurrent classifiers: the uni-directional LSTM of the SPGD/iAdvT papers and Bělohlávek et
al.'s bidirectional GRU. Both are :class:`Classifier` s: adversaries perturb ``embed`` outputs.

LSTM (Sato et al. 2018; Barham & Feizi 2019, App. B): embeddings -> uni-LSTM -> final hidden
state -> one hidden ReLU layer (30 units in the paper) -> logits. The papers use 256-d embeddings
learnt from an LM and a 1024-unit LSTM; here embeddings are GloVe-50d (``--arch lstm``) and the
hidden size is a flag (default 256, so an epoch on SST-2 takes CPU minutes, not hours).

BiGRU (Bělohlávek et al. 2018, §5.3): randomly initialised embeddings -> bidirectional GRU ->
the concatenation of both directions' last outputs -> MLP with one hidden layer -> logits, with
dropout on the embeddings and the MLP hidden layer.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..tokenizers import WordTokenizer
from .base import Classifier, ClassifierOutput


class RNNClassifier(Classifier):
    def __init__(self, tokenizer: WordTokenizer, num_labels: int, cell: str = "lstm",
                 bidirectional: bool = False, embedding_dim: int = 50, hidden_size: int = 256,
                 mlp_hidden: int = 30, dropout: float = 0.5, arch: str = "lstm"):
        super().__init__()
        if cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be lstm or gru, got {cell!r}")
        self.arch, self.tokenizer, self.num_labels = arch, tokenizer, num_labels
        self.cell, self.bidirectional = cell, bidirectional
        self.embedding_dim, self.rnn_hidden, self.mlp_hidden, self.dropout_p = (
            embedding_dim, hidden_size, mlp_hidden, dropout)
        self.embedding = nn.Embedding(len(tokenizer), embedding_dim, padding_idx=tokenizer.pad_id)
        rnn_cls = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn_cls(embedding_dim, hidden_size, batch_first=True, bidirectional=bidirectional)
        self.hidden_size = hidden_size * (2 if bidirectional else 1)  # H of pooled/tokens
        self.drop = nn.Dropout(dropout)
        if mlp_hidden > 0:
            self.head = nn.Sequential(nn.Linear(self.hidden_size, mlp_hidden), nn.ReLU(),
                                      nn.Dropout(dropout), nn.Linear(mlp_hidden, num_labels))
        else:
            self.head = nn.Linear(self.hidden_size, num_labels)

    def embedding_layer(self) -> nn.Embedding:
        return self.embedding

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """dropout(E) <float>[B,T,D]: the embedding dropout belongs to ``embed``, so an adversary's δ
        is added *after* it and reaches the recurrent layer intact (Miyato et al. 2017's
        ``Embedding`` layer and Sato et al. 2018's ``xs = dropout(embed(x)); xs + d``). Identity in
        eval mode, so attacks and heatmaps see the plain embeddings."""
        return self.drop(self.embedding(input_ids))  # (B, T, D)

    def embed_members(self, member_ids: torch.Tensor) -> torch.Tensor:
        """(see ``Classifier.embed_members``) one gather, times the embedding dropout mask ``embed``
        would draw for [B,T] ids: dropout on ones of that shape draws the same Bernoulli tensor."""
        rows = self.embedding(member_ids)  # (B, T, S, D)
        if not (self.training and self.drop.p > 0):
            return rows
        return rows * self.drop(rows.new_ones(rows[:, :, 0].shape)).unsqueeze(2)

    def forward_embeds(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> ClassifierOutput:
        B, T, _ = embeds.shape
        lengths = attention_mask.sum(1).clamp(min=1).cpu()  # (B,) empty rows read one pad token
        # embeds is dropout(E) + δ already: no dropout here, or δ would be rescaled and zeroed
        packed = pack_padded_sequence(embeds, lengths, batch_first=True, enforce_sorted=False)
        out, h = self.rnn(packed)
        h_n = h[0] if self.cell == "lstm" else h  # (dirs, B, h)
        tokens, _ = pad_packed_sequence(out, batch_first=True, total_length=T)  # (B, T, H)
        # final state: forward direction's last step (+ backward direction's, which ends at t=0)
        pooled = torch.cat([h_n[0], h_n[1]], dim=-1) if self.bidirectional else h_n[-1]  # (B, H)
        logits = self.head(self.drop(pooled) if self.mlp_hidden == 0 else pooled)
        return ClassifierOutput(logits=logits, pooled=pooled, tokens=tokens)

    def config_dict(self) -> dict:
        return {"family": "rnn", "arch": self.arch, "num_labels": self.num_labels, "cell": self.cell,
                "bidirectional": self.bidirectional, "embedding_dim": self.embedding_dim,
                "hidden_size": self.rnn_hidden, "mlp_hidden": self.mlp_hidden, "dropout": self.dropout_p,
                "vocab_size": len(self.tokenizer)}

    @classmethod
    def from_config(cls, cfg: dict, tokenizer) -> "RNNClassifier":
        if cfg["vocab_size"] != len(tokenizer):
            raise ValueError(f"vocabulary has {len(tokenizer)} entries, config says {cfg['vocab_size']}")
        return cls(tokenizer, cfg["num_labels"], cfg["cell"], cfg["bidirectional"], cfg["embedding_dim"],
                   cfg["hidden_size"], cfg["mlp_hidden"], cfg["dropout"], cfg["arch"])
