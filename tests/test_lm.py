"""Word-level LSTM LM: perplexity of known distributions, save/load, a tiny training run."""

from __future__ import annotations

import math

import pytest
import torch

from advviz.errors import AdvvizError
from advviz.analysis.lm import (LMConfig, LMTrainConfig, LSTMLanguageModel, build_lm_tokenizer, load_lm, perplexity,
                       save_lm, sentence_nll, train_lm)
from conftest import SENTENCES, disk_full_at_rename


def _unigram_lm(probs: dict[str, float]) -> LSTMLanguageModel:
    """An LM whose next-word distribution ignores the context: decoder weights 0, bias = log p."""
    tok = build_lm_tokenizer(list(probs), max_vocab=None, min_freq=1)
    lm = LSTMLanguageModel(tok, LMConfig(embedding_dim=4, hidden_size=4, dropout=0.0))
    with torch.no_grad():
        lm.decoder.weight.zero_()
        bias = torch.full((len(tok.vocab),), -1e9)
        for w, p in probs.items():
            bias[tok.index[w]] = math.log(p)
        lm.decoder.bias.copy_(bias)
    return lm.eval()


def test_uniform_lm_perplexity_is_vocabulary_size():
    tok = build_lm_tokenizer(["a b c d e f"], max_vocab=None, min_freq=1)
    lm = LSTMLanguageModel(tok, LMConfig(embedding_dim=4, hidden_size=4, dropout=0.0)).eval()
    with torch.no_grad():
        lm.decoder.weight.zero_()
        lm.decoder.bias.zero_()
    assert perplexity(lm, ["a b c", "f e"]) == pytest.approx(len(tok.vocab), rel=1e-5)  # 10 = 4 special + 6


def test_known_sequence_perplexity_by_hand():
    # p(good)=0.5, p(movie)=0.25, p(</s>)=0.25 in every context
    lm = _unigram_lm({"good": 0.5, "movie": 0.25, "</s>": 0.25})
    # "good movie" predicts good, movie, </s>: -log p = log 2 + log 4 + log 4 over 3 tokens
    expected = math.exp((math.log(2) + 2 * math.log(4)) / 3)
    assert perplexity(lm, ["good movie"]) == pytest.approx(expected, rel=1e-5)
    # without </s>: (log 2 + log 4) / 2
    assert perplexity(lm, ["good movie"], include_eos=False) == pytest.approx(math.exp(1.5 * math.log(2)), rel=1e-5)
    nll, count = sentence_nll(lm, ["good", "good movie good"])
    assert list(count) == [2, 4]
    assert nll[0] == pytest.approx(math.log(2) + math.log(4), rel=1e-5)


def test_corpus_perplexity_pools_tokens_not_sentences():
    lm = _unigram_lm({"good": 0.5, "movie": 0.25, "</s>": 0.25})
    # "good" -> log2+log4 over 2; "movie movie" -> 3 log4 over 3: pooled exp(total / 5)
    total = math.log(2) + math.log(4) + 3 * math.log(4)
    assert perplexity(lm, ["good", "movie movie"]) == pytest.approx(math.exp(total / 5), rel=1e-5)


def test_save_load_roundtrip(tmp_path):
    tok = build_lm_tokenizer(SENTENCES, max_vocab=None, min_freq=1)
    lm = LSTMLanguageModel(tok, LMConfig(embedding_dim=6, hidden_size=6, dropout=0.0)).eval()
    save_lm(lm, tmp_path / "lm", {"held_out_perplexity": 1.0})
    assert not list(tmp_path.glob(".lm.tmp-*"))
    lm2 = load_lm(tmp_path / "lm")
    assert perplexity(lm2, SENTENCES) == pytest.approx(perplexity(lm, SENTENCES), rel=1e-6)
    assert lm2.metrics["held_out_perplexity"] == 1.0


def test_failed_save_keeps_the_previous_lm(tmp_path):
    """The LM is written like a checkpoint (``atomic_dir``): a full disk mid-save leaves the old LM."""
    tok = build_lm_tokenizer(SENTENCES, max_vocab=None, min_freq=1)
    lm = LSTMLanguageModel(tok, LMConfig(embedding_dim=6, hidden_size=6, dropout=0.0)).eval()
    save_lm(lm, tmp_path / "lm", {"held_out_perplexity": 1.0})
    with disk_full_at_rename(), \
            pytest.raises(AdvvizError, match="No space left on device; the previous language model"):
        save_lm(lm, tmp_path / "lm", {"held_out_perplexity": 2.0})
    assert load_lm(tmp_path / "lm").metrics["held_out_perplexity"] == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lm"]


def test_load_lm_rejects_non_lm(tmp_path):
    with pytest.raises(AdvvizError, match="not an advviz language model"):
        load_lm(tmp_path)
    (tmp_path / "config.json").write_text('{"format_version": 1}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(AdvvizError, match="not a language model"):
        load_lm(tmp_path)


def test_empty_texts_error():
    lm = _unigram_lm({"good": 0.5, "</s>": 0.5})
    with pytest.raises(AdvvizError):
        perplexity(lm, [])


@pytest.mark.slow
def test_train_lm_small_real_data(tmp_path, data_dir):
    cfg = LMTrainConfig(epochs=2, max_train=300, batch_size=32, max_vocab=2000, min_freq=1)
    lm, metrics = train_lm("sst2-sent", tmp_path / "lm", cfg, LMConfig(embedding_dim=16, hidden_size=32),
                           data_dir=data_dir, progress=False)
    hist = metrics["history"]
    assert hist[-1]["train_perplexity"] < hist[0]["train_perplexity"]
    assert metrics["held_out_perplexity"] < len(lm.tokenizer.vocab)  # better than uniform
    assert (tmp_path / "lm" / "metrics.json").is_file() and (tmp_path / "lm" / "vocab.txt").is_file()
    assert load_lm(tmp_path / "lm").tokenizer.vocab == lm.tokenizer.vocab
