"""A user's own Hugging Face ``*ForSequenceClassification`` model, as it is, behind the
:class:`Classifier` contract (``advviz import``; family ``hf-seq`` in config.json).

Unlike :class:`~advviz.models.transformer.HFEncoderClassifier` (an encoder plus advviz's own
dropout→Linear head on [CLS]), the model's **own** head and pooling give the logits, so advviz's
probabilities are transformers' own forward on the same ids (eval mode, float32). The adversary
perturbs the word embeddings (``get_input_embeddings()``), which are fed back through
``inputs_embeds``: position and token-type embeddings are added by the model, as for MiniLM.

What each output is:

- ``logits``: the model's own ``logits``.
- ``tokens``: the last hidden state (``output_hidden_states=True``, the last entry).
- ``pooled``, the representation ``project``/UMAP, CARL and the Representation-space page read:
  the input of the head's final ``nn.Linear`` (the last Linear with ``num_labels`` outputs),
  captured with a forward pre-hook, so it is what the model itself classifies from. Per
  architecture: BERT and ALBERT — the pooler output tanh(W·h_[CLS]); RoBERTa (and XLM-R,
  CamemBERT) — tanh(dense(h_<s>)) of ``RobertaClassificationHead``; DistilBERT —
  ReLU(pre_classifier(h_[CLS])). In training mode it is taken after the head's dropout (the
  hook sees what the Linear sees); in eval mode, which every analysis uses, dropout is the
  identity.

The state dict is the stock model's under the prefix ``hf.`` (``hf.bert.embeddings...``);
config.json keeps the transformers config (``model_type``, ``architectures``, ``id2label``) so
the model is rebuilt with ``AutoModelForSequenceClassification.from_config``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..tokenizers import HFTokenizer
from .base import Classifier, ClassifierOutput
from .transformer import transformers_config

#: model types whose position ids start after the padding index (``padding_idx + 1``)
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "longformer", "xlm-roberta-xl")


def head_linear(model: nn.Module, num_labels: int) -> nn.Linear:
    """The final Linear of a sequence classifier's head: the last ``nn.Linear`` producing
    ``num_labels`` outputs (``classifier``, ``classifier.out_proj``, ``score``, ...)."""
    found = [m for _, m in model.named_modules() if isinstance(m, nn.Linear) and m.out_features == num_labels]
    if not found:
        raise ValueError(f"the model has no Linear layer with {num_labels} outputs (its classification head)")
    return found[-1]


def position_limit(config) -> int | None:
    """How many tokens the model reads: its position embeddings, less the padding offset of the
    RoBERTa family (514 positions hold 512 tokens)."""
    n = getattr(config, "max_position_embeddings", None)
    if not isinstance(n, int):
        return None
    if getattr(config, "model_type", None) in OFFSET_POSITIONS:
        n -= (getattr(config, "pad_token_id", None) or 1) + 1
    return n


class HFSequenceClassifier(Classifier):
    def __init__(self, hf_model: nn.Module, tokenizer: HFTokenizer, arch: str, source: str = ""):
        super().__init__()
        self.hf, self.tokenizer, self.arch, self.source = hf_model, tokenizer, arch, source
        self.num_labels = hf_model.config.num_labels
        self._head = head_linear(hf_model, self.num_labels)
        self.hidden_size = self._head.in_features  # H of `pooled`
        self.embedding_dim = hf_model.get_input_embeddings().embedding_dim
        self._pooled: torch.Tensor | None = None
        self._head.register_forward_pre_hook(self._capture)

    def _capture(self, module, inputs) -> None:
        self._pooled = inputs[0]

    def embedding_layer(self) -> nn.Embedding:
        return self.hf.get_input_embeddings()

    def forward_embeds(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> ClassifierOutput:
        self._pooled = None
        out = self.hf(inputs_embeds=embeds, attention_mask=attention_mask, output_hidden_states=True, return_dict=True)
        pooled, self._pooled = self._pooled, None
        if pooled.dim() == 3:  # a head that applies its Linear per token and pools after (none of the stock ones)
            pooled = pooled[:, 0]
        return ClassifierOutput(logits=out.logits, pooled=pooled, tokens=out.hidden_states[-1])

    def config_dict(self) -> dict:
        hf_config = self.hf.config.to_dict()
        hf_config.pop("_name_or_path", None)  # a path on the importing machine; `source` records it
        return {"family": "hf-seq", "arch": self.arch, "num_labels": self.num_labels, "source": self.source,
                "hf_config": hf_config}

    @classmethod
    def from_config(cls, cfg: dict, tokenizer) -> "HFSequenceClassifier":
        from transformers import AutoModelForSequenceClassification  # lazy: heavy

        config = transformers_config(cfg["hf_config"])
        if config.num_labels != cfg["num_labels"]:
            raise ValueError(f"hf_config.id2label names {config.num_labels} classes, num_labels is {cfg['num_labels']}")
        return cls(AutoModelForSequenceClassification.from_config(config), tokenizer, cfg["arch"], cfg.get("source", ""))
