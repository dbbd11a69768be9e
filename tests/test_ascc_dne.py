"""ASCC and DNE (issue 28): training over word-substitution sets, and ``--attack ascc`` to see it.

Tiny models (tests/conftest.py) and a hand-written substitution file whose words are in their
vocabularies; the CLI runs are the 4-unit BiGRU of tests/test_hostile_cli.py."""

from __future__ import annotations

import json

import pytest
import torch

from advviz import substitutions
from advviz.cli import main
from advviz.commands import flags
from advviz.config import flag_of
from advviz.methods import build_method, resolve_method
from advviz.methods.ascc import ASCCConfig
from advviz.methods.dne import DNE, DNEConfig, dirichlet
from advviz.methods.substitution_sets import build_table

from conftest import LABELS, SENTENCES, make_tiny_bert, make_tiny_rnn
from test_hostile_cli import TINY, _toy_rows, one_line

SETS = {"good": ["great", "wonderful", "fine"], "bad": ["awful", "dull"], "dull": ["boring", "bleak"],
        "movie": ["film", "notaword"], "charming": []}


@pytest.fixture
def toy(tmp_path):
    p = tmp_path / "toy.tsv"
    p.write_text(_toy_rows())
    return p


@pytest.fixture
def nb(tmp_path):
    p = tmp_path / "nb.json"
    p.write_text(json.dumps(SETS))
    return str(p)


def batch_of(model, texts=SENTENCES, labels=LABELS):
    b = model.tokenizer.batch(list(texts))
    b["labels"] = torch.tensor(list(labels))
    return b


def vocab_id(model, word):
    return model.tokenizer.vocab.index(word)


# ------------------------------------------------------------------------------------ the sets


def test_table_maps_single_entries_only(tiny_lstm, tiny_bert, nb):
    """The token itself is column 0; a substitute a word vocabulary lacks is the <unk> row (what the
    LSTM reads for that swap), once; for WordPiece a multi-piece substitute is dropped; DNE's second
    order adds the substitutes' substitutes."""
    sets = substitutions.load(nb)
    t = build_table(tiny_lstm.tokenizer, sets)
    movie = vocab_id(tiny_lstm, "movie")
    row = [tiny_lstm.tokenizer.vocab[i] for i, ok in zip(t.ids[movie].tolist(), t.valid[movie].tolist()) if ok]
    assert row == ["movie", "film", "<unk>"]  # "notaword" is not an entry: the LSTM reads it as <unk>
    assert t.valid[vocab_id(tiny_lstm, "charming")].tolist() == [True] + [False] * (t.ids.shape[1] - 1)
    two = build_table(tiny_lstm.tokenizer, sets, second_order=True)
    bad = vocab_id(tiny_lstm, "bad")
    words = {tiny_lstm.tokenizer.vocab[i] for i, ok in zip(two.ids[bad].tolist(), two.valid[bad].tolist()) if ok}
    assert words == {"bad", "awful", "dull", "boring", "bleak"} and int(two.first[bad]) == 3
    # WordPiece: "notaword" is several pieces, never a member; the stats say how many sets survive
    tb = build_table(tiny_bert.tokenizer, sets)
    assert tb.stats["sets"] == 4 and tb.stats["movable_tokens"] == 4
    assert vocab_id(tiny_bert, "film") in tb.ids[vocab_id(tiny_bert, "movie")].tolist()


def test_neighbors_flag_is_shared(nb):
    """ASCC and DNE declare one ``--neighbors`` field: one flag, resolved through resolve_method."""
    import argparse
    import dataclasses

    fa = {f.name: f for f in dataclasses.fields(ASCCConfig)}["neighbors"]
    fd = {f.name: f for f in dataclasses.fields(DNEConfig)}["neighbors"]
    assert flag_of(fa) == flag_of(fd) == substitutions.NEIGHBORS_FLAG
    p = argparse.ArgumentParser()
    flags.add_method_flags(p, ["ascc", "dne"], "lstm")  # a duplicate flag would raise here
    assert p.parse_args(["--neighbors", nb]).neighbors == nb
    for name in ("ascc", "dne"):
        assert resolve_method(name, "lstm", {"neighbors": nb})["neighbors"] == nb
    assert resolve_method("ascc", "minilm")["step_size"] == 1.0  # the BERT preset


# ------------------------------------------------------------------------------------- ASCC


@pytest.mark.parametrize("family", ["lstm", "gru", "bert"])
def test_ascc_weights_are_convex_and_raise_the_kl(family, nb):
    model = make_tiny_bert() if family == "bert" else make_tiny_rnn(family)
    with torch.no_grad():  # an untrained tiny model barely reads its input: sharpen its logits
        for p in model.head.parameters():
            p.mul_(3.0)
    b = batch_of(model)
    mask = model.perturbable_mask(b["input_ids"], b["attention_mask"])
    method = build_method("ascc", {"neighbors": nb, "sparse_weight": 0.0, "step_size": 1.0, "steps": 10})
    method.setup(model, None, 0)
    hull = method.hull_point(model, b["input_ids"], b["attention_mask"], mask, torch.Generator().manual_seed(0),
                             measure=True)
    _, valid, _ = method.table_for(model).gather(b["input_ids"], mask)
    assert torch.allclose(hull.weights.sum(-1), torch.ones(hull.weights.shape[:2]), atol=1e-5)
    assert bool((hull.weights[~valid] == 0).all()) and bool((hull.weights >= 0).all())
    # δ is the hull point minus the word's own row
    rows = model.embedding_matrix().detach()[hull.ids]
    expect = (hull.weights.unsqueeze(-1) * rows).sum(2) - rows[:, :, 0]
    assert torch.allclose(hull.delta, expect * valid[..., 1:].any(-1, keepdim=True), atol=1e-5)
    if family != "bert":  # the untrained 2-layer BERT's output moves by ~1e-8 (KL at float noise)
        assert float(hull.kl.sum()) > 2 * float(hull.kl_init.sum()) > 0  # the ascent raised KL(p(x) ‖ p(v̂))


def test_ascc_entropy_term_makes_weights_sparse(tiny_lstm, nb):
    b = batch_of(tiny_lstm)
    mask = tiny_lstm.perturbable_mask(b["input_ids"], b["attention_mask"])
    ent = []
    for alpha in (0.0, 10.0):
        m = build_method("ascc", {"neighbors": nb, "sparse_weight": alpha, "step_size": 0.3})
        h = m.hull_point(tiny_lstm, b["input_ids"], b["attention_mask"], mask, torch.Generator().manual_seed(0))
        w = h.weights[h.weights.gt(0).sum(-1) > 1]  # tokens with substitutes
        ent.append(float(-(w * w.clamp(min=1e-30).log()).sum(-1).mean()))
    assert ent[1] < ent[0]


@pytest.mark.parametrize("name", ["ascc", "dne"])
def test_word_without_neighbours_never_moved(tiny_gru, nb, name):
    """Tokens with no substitute (\"charming\", \"journey\"), padding: δ = 0; a word with one moves."""
    b = batch_of(tiny_gru, ["a charming journey", "a good movie"], [1, 1])
    mask = tiny_gru.perturbable_mask(b["input_ids"], b["attention_mask"])
    method = build_method(name, {"neighbors": nb})
    method.setup(tiny_gru, None, 0)
    if name == "ascc":
        delta = method.perturb(tiny_gru, b, torch.Generator().manual_seed(0))
    else:
        s_ids, valid, w, rows = method.sample(tiny_gru, b["input_ids"], mask, torch.Generator().manual_seed(0))
        delta = (w.unsqueeze(-1) * rows).sum(2) - rows[:, :, 0]
    norms = delta.norm(dim=-1)  # (2, T)
    assert float(norms[0].abs().max()) == 0.0
    good = (b["input_ids"][1] == vocab_id(tiny_gru, "good")).nonzero().item()
    assert float(norms[1, good]) > 0
    assert float(norms[1][~mask[1]].abs().max() if (~mask[1]).any() else 0.0) == 0.0


# -------------------------------------------------------------------------------------- DNE


def test_dne_samples_lie_in_the_hull(tiny_lstm, nb):
    b = batch_of(tiny_lstm)
    mask = tiny_lstm.perturbable_mask(b["input_ids"], b["attention_mask"])
    method = DNE(DNEConfig(neighbors=nb))
    _, valid, w, _ = method.sample(tiny_lstm, b["input_ids"], mask, torch.Generator().manual_seed(0))
    assert bool((w >= 0).all()) and bool((w[~valid] == 0).all())
    assert torch.allclose(w.sum(-1), torch.ones(w.shape[:2]), atol=1e-5)
    # the decay: second-order members get α·decay, so less weight on average over many draws
    valid1 = torch.tensor([[[True, True, True, True]]]).expand(4000, 1, 4)
    draws = dirichlet(valid1, torch.full((4000, 1), 2), 1.0, 0.1, torch.Generator().manual_seed(0))
    mean = draws.mean((0, 1))
    assert float(mean[:2].min()) > 3 * float(mean[2:].max())


def test_dne_train_step_ascends_and_trains_every_pass(tiny_lstm, nb):
    method = build_method("dne", {"neighbors": nb, "steps": 2})
    method.setup(tiny_lstm, None, 0)
    tiny_lstm.train()
    calls = []

    def backward(loss):
        calls.append(loss.item())
        loss.backward()

    out = method.train_step(tiny_lstm, batch_of(tiny_lstm), backward)
    assert len(calls) == 3 and abs(float(out.loss) - sum(calls)) < 1e-5  # K + 1 passes, summed
    assert all(p.grad is not None for p in tiny_lstm.parameters() if p.requires_grad)


# ------------------------------------------------------------------------- training, CLI, inspect


@pytest.mark.parametrize("name", ["ascc", "dne"])
def test_one_epoch_on_an_lstm_like_model(nb, name):
    model = make_tiny_rnn("lstm", dropout=0.3)
    method = build_method(name, {"neighbors": nb})
    method.setup(model, None, 0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    for i in range(0, len(SENTENCES), 3):
        opt.zero_grad()
        out = method.train_step(model, batch_of(model, SENTENCES[i:i + 3], LABELS[i:i + 3]), lambda l: l.backward())
        assert torch.isfinite(out.loss)
        opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert method.metrics()["substitution_sets"]["movable_tokens"] >= 4


def _toy_sets(tmp_path):
    p = tmp_path / "toy-nb.json"
    p.write_text(json.dumps({"good": ["great", "fine", "lovely"], "bad": ["awful", "dull"], "dull": ["boring", "poor"],
                             "film": []}))
    return p


@pytest.mark.parametrize("name", ["ascc", "dne"])
def test_train_bigru_and_inspect(toy, tmp_path, capsys, name):
    p = _toy_sets(tmp_path)
    out = tmp_path / name
    rc = main(["train", "--dataset", str(toy), *TINY, "--method", name, "--neighbors", str(p), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"]["name"] == name and cfg["method"]["neighbors"] == str(p)
    capsys.readouterr()
    if name != "ascc":
        return
    rc = main(["inspect", str(out), "--attack", "ascc", "--neighbors", str(p), "--json",
               "--text", "the film was good and bad"])
    res = json.loads(capsys.readouterr().out)
    assert rc == 0
    sets = substitutions.load(p)
    moved = [t for t in res["tokens"] if t["moved_to"] is not None]
    # "the", "film", "was", "and" have no substitutes; "good"/"bad" move unless they keep all the weight
    assert moved and {t["token"] for t in moved} <= {"good", "bad"}
    for t in moved:
        assert t["moved_to"] in sets[t["token"]]
        words = [w for w, _ in t["substitutions"]]
        assert words[0] == t["token"] and set(words[1:]) <= set(sets[t["token"]])
        assert abs(sum(x for _, x in t["substitutions"]) - 1) < 1e-4
    assert all(t["substitutions"] == [[t["token"], 1.0]] and t["norm"] == 0.0
               for t in res["tokens"] if t["token"] not in ("good", "bad"))


@pytest.mark.parametrize("name", ["ascc", "dne"])
def test_missing_neighbour_file_is_one_line(toy, tmp_path, capsys, name):
    out = tmp_path / "m"
    line = one_line(capsys, ["train", "--dataset", toy, *TINY, "--method", name, "--neighbors",
                             tmp_path / "nope.json", "--out", out])
    assert "--neighbors" in line and "nope.json" in line
    assert not out.exists()


def test_words_atlas_moved_to_from_the_sets(toy, tmp_path, capsys):
    from advviz.api import load
    from advviz.analysis.words import attack_tokens

    p = _toy_sets(tmp_path)
    out = tmp_path / "b"
    assert main(["train", "--dataset", str(toy), *TINY, "--out", str(out)]) == 0
    model = load(out)
    texts = ["the film was good and bad", "the film was dull"]
    rec, _ = attack_tokens(model, texts, [1, 0], "ascc", {"neighbors": str(p)})
    sets = substitutions.load(p)
    vocab = model.classifier.tokenizer.vocab
    assert bool((rec.moved_to >= 0).any())
    for tok, mv in zip(rec.token.tolist(), rec.moved_to.tolist()):
        if mv >= 0:
            assert vocab[mv] in sets[vocab[tok]]
        if not sets.get(vocab[tok]):
            assert mv < 0  # never moved


def test_eval_attack_ascc_is_one_line(toy, tmp_path, capsys):
    """``eval --attack`` sweeps ε; ASCC has none: one line saying so, not a confusing flag error."""
    p = _toy_sets(tmp_path)
    out = tmp_path / "b"
    assert main(["train", "--dataset", str(toy), *TINY, "--out", str(out)]) == 0
    capsys.readouterr()
    line = one_line(capsys, ["eval", out, "--dataset", toy, "--attack", "ascc", "--neighbors", p])
    assert "has no ε" in line


def test_training_hull_point_is_dropped_out_as_a_whole(nb):
    """In training the encoder reads dropout(v̂): every member of a set is dropped out with the mask
    ``embed(x)`` draws, not v̂ − E[x] added to dropout(E[x])."""
    from advviz.methods.perturb import DropoutMasks

    model = make_tiny_rnn("lstm", dropout=0.5).train()
    b = batch_of(model)
    mask = model.perturbable_mask(b["input_ids"], b["attention_mask"])
    method = build_method("dne", {"neighbors": nb})
    masks = DropoutMasks(b["input_ids"].device)
    s_ids, valid, _, rows = method.hull_rows(model, b["input_ids"], mask, masks)
    masks.replay()
    e = model.embed(b["input_ids"]).detach()  # dropout(E[x])
    assert torch.equal(rows[:, :, 0], e)
    kept = (e != 0).unsqueeze(2)  # (B, T, 1, D): the coordinates this step keeps
    plain = model.embedding_matrix().detach()[s_ids]  # (B, T, S, D)
    assert torch.allclose(rows, plain * kept * 2.0)  # p = 0.5: kept coordinates scaled by 1/(1 − p)


# ------------------------------------------------------------- fidelity to the references (issue 28)


@pytest.mark.parametrize("name", ["ascc", "dne"])
def test_hull_pass_trains_the_substitutes_rows(nb, name):
    """The references embed every member with the trainable table and let the hull point's loss
    reach all of them (ASCC ``text_syn_p_to_logit``, TextDefender's ``WeightedEmbedding``): a
    substitute that is not in the batch ("great" for "good") gets a gradient; with
    ``--detach-substitutes`` only the sentence's own rows do."""
    grads = {}
    for detach in (False, True):
        model = make_tiny_rnn("lstm", dropout=0.3)
        method = build_method(name, {"neighbors": nb, "detach_substitutes": detach})
        method.setup(model, None, 0)
        model.train()
        method.train_step(model, batch_of(model, ["a good movie"], [1]), lambda loss: loss.backward())
        table = model.embedding_matrix()
        assert table.requires_grad and table.grad is not None
        grads[detach] = table.grad[[vocab_id(model, "great"), vocab_id(model, "film")]].norm(dim=-1)
        assert float(table.grad[vocab_id(model, "good")].norm()) > 0  # the token's own row learns either way
    assert bool((grads[False] > 0).all())
    assert float(grads[True].abs().max()) == 0.0


def test_ascc_entropy_term_has_the_references_weight(nb):
    """TextDefender's (and the ASCC reference's) inner loss is −Σ_b KL_b + α·mean(H) over the padded
    [B, T] grid; on its SST-2 shape (32 × 128) one Adam step from the same start must land on the
    same weights as advviz's per-sentence objective, which fixes that weight per position (α/4096)."""
    model = make_tiny_rnn("lstm")
    with torch.no_grad():
        for p in model.head.parameters():
            p.mul_(3.0)
    texts = [SENTENCES[i % len(SENTENCES)] for i in range(32)]
    b = batch_of(model, texts, [LABELS[i % len(LABELS)] for i in range(32)])
    pad = int(b["input_ids"][b["attention_mask"] == 0].flatten()[0]) if (b["attention_mask"] == 0).any() else 0
    T0 = b["input_ids"].shape[1]
    ids = torch.full((32, 128), pad, dtype=torch.long)
    att = torch.zeros(32, 128, dtype=torch.long)
    ids[:, :T0], att[:, :T0] = b["input_ids"], b["attention_mask"]
    mask = model.perturbable_mask(ids, att)
    alpha, lr = 10.0, 0.5
    method = build_method("ascc", {"neighbors": nb, "sparse_weight": alpha, "step_size": lr, "steps": 1})
    method.setup(model, None, 0)
    model.eval()
    hull = method.hull_point(model, ids, att, mask, torch.Generator().manual_seed(0))

    # the reference's step, written out (TextDefender model/models.py ASCCModel.forward)
    s_ids, valid, _, rows = method.hull_rows(model, ids, mask)
    B, T, S = s_ids.shape
    w = (torch.randn(B, T, S, generator=torch.Generator().manual_seed(0)) * (2.0 / (T * S)) ** 0.5).requires_grad_()
    opt = torch.optim.Adam([w], lr=lr, weight_decay=2e-5)
    with torch.no_grad():
        clean = model(inputs_embeds=model.embed(ids), attention_mask=att).logits
    w_masked = valid * w + ~valid * -999.0
    adv = (rows * torch.softmax(w_masked, -1).unsqueeze(-1) * valid.unsqueeze(-1)).sum(2)
    logits = model(inputs_embeds=adv, attention_mask=att).logits
    kl = torch.nn.functional.kl_div(torch.log_softmax(logits, 1), torch.softmax(clean, 1), reduction="sum")
    sparse = (-torch.softmax(w_masked, -1) * valid * torch.log_softmax(w_masked, -1)).sum(-1).mean()
    (-kl + alpha * sparse).backward()
    opt.step()
    ref = torch.softmax(w.detach().masked_fill(~valid, float("-inf")), -1)
    assert torch.allclose(hull.weights, ref, atol=1e-4)


def test_dne_weights_the_adversarial_passes_as_the_authors(nb):
    """dugu9sword/dne (the paper's code, adv_trainer.py): the Dirichlet pass counts once and each of
    the K ascent passes 1/K (``batch_loss / adv_iteration``); TextDefender sums them unscaled. With
    η = 0 every pass sees the same point, so the backpropagated losses are L, L/K, …, L/K."""
    model = make_tiny_rnn("lstm")
    method = build_method("dne", {"neighbors": nb, "steps": 2, "step_size": 0.0})
    method.setup(model, None, 0)
    model.eval()  # no dropout: the passes are bit-comparable
    calls = []

    def backward(loss):
        calls.append(loss.item())
        loss.backward()

    method.train_step(model, batch_of(model), backward)
    assert calls[1] == pytest.approx(calls[0] / 2, rel=1e-5) and calls[2] == pytest.approx(calls[0] / 2, rel=1e-5)


# ------------------------------------------------------------------ --vocab-substitutes (issue 28)


def test_vocabulary_words_and_the_built_vocabulary():
    sets = {"good": ["great", "fine"], "fine": ["penalty", "good"], "bad": ["awful"]}
    assert substitutions.vocabulary_words(sets, ["good", "bad"]) == ["great", "fine", "awful"]
    assert substitutions.vocabulary_words(sets, ["good"], second_order=True) == ["great", "fine", "penalty"]
    from advviz.tokenizers import WordTokenizer

    texts = ["good movie", "bad movie"]
    plain = WordTokenizer.build(texts)
    ext = WordTokenizer.build(texts, extra=lambda words: substitutions.vocabulary_words(sets, words) + ["two words"])
    assert ext.vocab[:len(plain.vocab)] == plain.vocab  # the training words keep their ids
    assert ext.vocab[len(plain.vocab):] == ["awful", "great", "fine"]  # in vocabulary order; never a phrase
    capped = WordTokenizer.build(texts, max_size=len(plain.vocab) + 1,
                                 extra=lambda words: substitutions.vocabulary_words(sets, words))
    assert capped.vocab == plain.vocab + ["awful"]


@pytest.mark.parametrize("method,flag,added", [("ascc", [], True), ("baseline", [], False),
                                               ("baseline", ["--vocab-substitutes", "yes"], True),
                                               ("ascc", ["--vocab-substitutes", "no"], False)])
def test_train_vocabulary_holds_the_substitutes(toy, tmp_path, capsys, monkeypatch, method, flag, added):
    """The ASCC reference fits its tokenizer on the synonyms of its vocabulary: a swap to "wonderful"
    (never in the toy training texts) reads a word with its own row, not <unk>. On by default for
    ascc/dne, by flag for any method on a word vocabulary (so a baseline can share it)."""
    p = tmp_path / "nb.json"
    p.write_text(json.dumps({"good": ["wonderful", "great"], "bad": ["dreadful"]}))
    out = tmp_path / "m"
    nb = ["--neighbors", str(p)] if method == "ascc" else []
    if method == "baseline":  # a baseline has no --neighbors: the default file of the data directory
        import gzip

        with gzip.open(tmp_path / substitutions.DEFAULT_FILE, "wb") as f:
            f.write(p.read_bytes())
        monkeypatch.setenv("ADVVIZ_DATA_DIR", str(tmp_path))
    rc = main(["train", "--dataset", str(toy), *TINY, "--method", method, *nb, *flag, "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    vocab = (out / "vocab.txt").read_text().split("\n")
    assert ("wonderful" in vocab and "dreadful" in vocab) == added
    assert "wonderful" not in _toy_rows()
    recorded = json.loads((out / "config.json").read_text())["model_info"].get("vocab_substitutes_added")
    assert recorded == (2 if added else None)  # wonderful, dreadful: the toy texts have "great" already


def test_vocab_substitutes_needs_a_word_vocabulary(toy, tmp_path, capsys):
    line = one_line(capsys, ["train", "--dataset", toy, *TINY, "--char", "--vocab-substitutes", "yes",
                             "--out", tmp_path / "m"])
    assert "--vocab-substitutes" in line and "word vocabulary" in line
