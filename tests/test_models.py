"""The Classifier contract, checked on every family."""

from __future__ import annotations

import torch

from conftest import batch_for


def test_contract_shapes(tiny_model):
    b = batch_for(tiny_model)
    B, T = b["input_ids"].shape
    emb = tiny_model.embed(b["input_ids"])
    assert emb.shape == (B, T, tiny_model.embedding_dim)
    out = tiny_model(inputs_embeds=emb, attention_mask=b["attention_mask"])
    assert out.logits.shape == (B, tiny_model.num_labels)
    assert out.pooled.shape == (B, tiny_model.hidden_size)
    assert out.tokens.shape == (B, T, tiny_model.hidden_size)
    V = len(tiny_model.vocabulary())
    assert tiny_model.embedding_matrix().shape == (V, tiny_model.embedding_dim)


def test_forward_from_ids_equals_forward_from_embeddings(tiny_model):
    b = batch_for(tiny_model)
    a = tiny_model(b["input_ids"], b["attention_mask"]).logits
    e = tiny_model(inputs_embeds=tiny_model.embed(b["input_ids"]), attention_mask=b["attention_mask"]).logits
    torch.testing.assert_close(a, e)


def test_padding_does_not_change_predictions(tiny_model):
    b1 = tiny_model.tokenizer.batch(["a wonderful , funny film"])
    b2 = tiny_model.tokenizer.batch(["a wonderful , funny film", "the plot is dull , boring and bad and long"])
    l1 = tiny_model(**b1).logits[0]
    l2 = tiny_model(**b2).logits[0]
    torch.testing.assert_close(l1, l2, atol=1e-5, rtol=1e-4)


def test_gradient_reaches_embeddings(tiny_model):
    b = batch_for(tiny_model)
    emb = tiny_model.embed(b["input_ids"]).detach().requires_grad_()
    tiny_model(inputs_embeds=emb, attention_mask=b["attention_mask"]).logits.sum().backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0


def test_perturbable_mask_excludes_pad_and_specials(tiny_bert):
    b = tiny_bert.tokenizer.batch(["good film", "a much longer sentence here"])
    m = tiny_bert.perturbable_mask(b["input_ids"], b["attention_mask"])
    toks = tiny_bert.tokenizer.convert_ids_to_tokens(b["input_ids"][0])
    assert toks[0] == "[CLS]" and not m[0, 0]
    assert [t for t, keep in zip(toks, m[0]) if keep] == ["good", "film"]


def test_tokens_round_trip(tiny_lstm):
    ids = tiny_lstm.tokenizer.encode("a charming journey .")
    assert tiny_lstm.tokenizer.decode(ids) == "a charming journey ."
    assert tiny_lstm.tokenizer.convert_ids_to_tokens(ids) == ["a", "charming", "journey", "."]


def test_glove_init_covers_common_words():
    from advviz.models import build_model

    model, info = build_model("lstm", ["the movie is good", "a bad film"], 2)
    assert info["glove_coverage"] == 1.0
    assert torch.count_nonzero(model.embedding.weight[0]) == 0  # <pad> row
    assert model.embedding_dim == 50


def test_char_tokenizer_option():
    from advviz.models import ModelOptions, build_model

    model, _ = build_model("bigru", ["ab c", "cab"], 2, ModelOptions(char=True, hidden_size=4, embedding_dim=4))
    assert model.tokenizer.tokenize("ab c") == ["a", "b", "▁", "c"]
    assert model.tokenizer.decode(model.tokenizer.encode("ab c")) == "ab c"
