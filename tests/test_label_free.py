"""The label-free adversaries (issue 14) on tiny models of every family: VAT's ‖r‖ = ε and power
iteration, MINE's estimate (up on correlated pairs, ≈ 0 on independent ones), UAE's loss
constraint and dual update, that neither reads a label, and the semi-supervised batch."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from advviz.errors import AdvvizError
from advviz.methods import build_method
from advviz.methods.base import kl_with_logits, supervised_loss
from advviz.methods.mine import MINE, dv_bound
from advviz.methods.perturb import normalize_l2
from advviz.methods.uae import dual_update
from advviz.methods.vat import random_unit
from conftest import LABELS, SENTENCES, batch_for, make_tiny_bert, make_tiny_rnn


def _mask(model, b):
    return model.perturbable_mask(b["input_ids"], b["attention_mask"])


def _no_labels(b):
    return {k: v for k, v in b.items() if k != "labels"}


# -- VAT -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.3, 2.0])
def test_vat_r_has_norm_eps_per_sequence(tiny_model, eps):
    b = batch_for(tiny_model)
    r = build_method("vat", {"epsilon": eps}).perturb(tiny_model, b, torch.Generator().manual_seed(1))
    norms = r.flatten(1).norm(dim=1)
    assert torch.allclose(norms, torch.full_like(norms, eps), atol=1e-4)
    assert (r[~_mask(tiny_model, b)] == 0).all()


def test_vat_is_one_power_iteration_by_hand(tiny_lstm):
    """r = ε·g/‖g‖, g = ∇_r KL(p(E) ‖ p(E + r)) at r = ξ·d/‖d‖ with d ~ N(0, I) from the generator."""
    b = batch_for(tiny_lstm)
    mask = _mask(tiny_lstm, b)
    emb = tiny_lstm.embed(b["input_ids"]).detach()
    p = tiny_lstm(inputs_embeds=emb, attention_mask=b["attention_mask"]).logits.detach()
    d = random_unit(emb, mask, torch.Generator().manual_seed(5))
    r0 = (0.1 * d).requires_grad_()
    kl = kl_with_logits(p, tiny_lstm(inputs_embeds=emb + r0, attention_mask=b["attention_mask"]).logits).sum()
    (g,) = torch.autograd.grad(kl, r0)
    expected = 1.5 * normalize_l2(g, mask)
    r = build_method("vat", {"epsilon": 1.5, "xi": 0.1}).perturb(tiny_lstm, b, torch.Generator().manual_seed(5))
    assert torch.allclose(r, expected, atol=1e-5)


def test_vat_power_iterations_flag_changes_r_and_keeps_eps(tiny_lstm):
    b = batch_for(tiny_lstm)
    r1 = build_method("vat", {"epsilon": 1.0}).perturb(tiny_lstm, b, torch.Generator().manual_seed(0))
    r3 = build_method("vat", {"epsilon": 1.0, "power_iterations": 3}).perturb(tiny_lstm, b,
                                                                            torch.Generator().manual_seed(0))
    assert not torch.allclose(r1, r3)
    assert torch.allclose(r3.flatten(1).norm(dim=1), torch.ones(len(SENTENCES)), atol=1e-4)


def test_vat_moves_the_models_own_prediction(tiny_lstm):
    """As an attack, KL(p(E) ‖ p(E + r_vadv)) is larger than for a random r of the same norm."""
    b = batch_for(tiny_lstm)
    emb = tiny_lstm.embed(b["input_ids"]).detach()
    att = b["attention_mask"]
    p = tiny_lstm(inputs_embeds=emb, attention_mask=att).logits
    r = build_method("vat", {"epsilon": 1.0, "power_iterations": 2}).perturb(tiny_lstm, b, torch.Generator().manual_seed(0))
    rand = random_unit(emb, _mask(tiny_lstm, b), torch.Generator().manual_seed(9))
    kl_v = kl_with_logits(p, tiny_lstm(inputs_embeds=emb + r, attention_mask=att).logits).mean()
    kl_r = kl_with_logits(p, tiny_lstm(inputs_embeds=emb + rand, attention_mask=att).logits).mean()
    assert kl_v > kl_r


@pytest.mark.parametrize("name", ["vat", "uae"])
def test_label_free_attacks_never_read_labels(tiny_model, name):
    b = batch_for(tiny_model)
    flipped = {**b, "labels": 1 - b["labels"]}
    d1 = build_method(name).perturb(tiny_model, _no_labels(b), torch.Generator().manual_seed(2))
    d2 = build_method(name).perturb(tiny_model, flipped, torch.Generator().manual_seed(2))
    assert torch.equal(d1, d2)


def test_vat_train_step_loss_is_ce_plus_lambda_kl(tiny_lstm):
    method = build_method("vat", {"adv_weight": 0.5})
    method.setup(tiny_lstm)
    out = method.train_step(tiny_lstm, batch_for(tiny_lstm), lambda loss: None)
    assert out.loss.item() == pytest.approx(out.logs["clean_loss"] + 0.5 * out.logs["vat_kl"], rel=1e-5)


# -- the semi-supervised batch -------------------------------------------------------------------


def _semi_batch(model, n_labeled=3):
    """SENTENCES with the last rows unlabeled: label -100, labeled False."""
    b = batch_for(model)
    lab = torch.arange(len(SENTENCES)) < n_labeled
    b["labels"] = torch.where(lab, b["labels"], torch.full_like(b["labels"], -100))
    b["labeled"] = lab
    return b


def test_supervised_loss_reads_labelled_rows_only():
    logits = torch.randn(4, 2)
    b = {"input_ids": torch.zeros(4, 3, dtype=torch.long), "labels": torch.tensor([1, 0, -100, -100]),
         "labeled": torch.tensor([True, True, False, False])}
    assert torch.allclose(supervised_loss(logits, b), F.cross_entropy(logits[:2], b["labels"][:2]))
    none = {**b, "labeled": torch.zeros(4, dtype=torch.bool)}
    assert supervised_loss(logits, none).item() == 0.0


@pytest.mark.parametrize("name", ["vat", "uae"])
def test_label_free_methods_learn_from_unlabeled_rows(tiny_model, name):
    """On a batch whose rows are all unlabeled the cross-entropy is 0, yet the label-free loss
    still gives the classifier gradients (every family); labels of unlabeled rows are never read."""
    method = build_method(name, {"epsilon": 1.0})
    method.setup(tiny_model, SimpleNamespace(texts=SENTENCES, labels=LABELS))
    tiny_model.train()
    b = _semi_batch(tiny_model, n_labeled=0)
    tiny_model.zero_grad()
    out = method.train_step(tiny_model, b, lambda loss: loss.backward())
    assert out.logs["clean_loss"] == 0.0 and math.isfinite(out.loss.item()) and out.loss.item() > 0
    assert tiny_model.embedding_layer().weight.grad is not None
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_model.head.parameters())


@pytest.mark.parametrize("name", ["vat", "uae"])
def test_label_free_train_step_on_a_mixed_batch(tiny_model, name):
    method = build_method(name, {"epsilon": 1.0})
    method.setup(tiny_model)
    tiny_model.train()
    b = _semi_batch(tiny_model, n_labeled=3)
    out = method.train_step(tiny_model, b, lambda loss: loss.backward())
    lab = b["labeled"]
    assert out.logs["clean_loss"] == pytest.approx(F.cross_entropy(out.logits[lab], b["labels"][lab]).item(), rel=1e-4)


def test_vat_uses_one_embedding_dropout_mask(monkeypatch):
    """dropout(E) is drawn once: the power iteration and the adversarial pass add r to it."""
    model = make_tiny_rnn("lstm", seed=3, dropout=0.5).train()
    calls = []
    orig = model.embed
    monkeypatch.setattr(model, "embed", lambda ids: calls.append(1) or orig(ids))
    method = build_method("vat", {"epsilon": 1.0, "power_iterations": 2})
    method.setup(model)
    method.train_step(model, batch_for(model), lambda loss: loss.backward())
    assert len(calls) == 1


# -- MINE ----------------------------------------------------------------------------------------


def _pairs(gen, correlated: bool, B=8, S=16, L=10):
    x = torch.randn(B, S, L, generator=gen)
    y = x + 0.3 * torch.randn(B, S, L, generator=gen) if correlated else torch.randn(B, S, L, generator=gen)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[:, 7:] = False
    return x, y, mask


def test_dv_bound_by_hand():
    tj = torch.tensor([[1.0, 2.0, 3.0]])
    tm = torch.tensor([[0.0, math.log(2.0), math.log(3.0)]])
    assert dv_bound(tj, tm).item() == pytest.approx(2.0 - math.log(2.0))


def test_mine_estimate_rises_on_correlated_pairs_and_stays_near_zero_on_independent_ones():
    gen = torch.Generator().manual_seed(0)
    held = {}
    for correlated in (True, False):
        mine = MINE(hidden=32, lr=1e-3, seed=0)
        x, y, mask = _pairs(gen, correlated, B=64)
        with torch.no_grad():
            before = mine.estimate(x, y, mask, gen).mean().item()
        for _ in range(200):
            mine.train(*_pairs(gen, correlated), 1, gen)
        x, y, mask = _pairs(gen, correlated, B=64)  # fresh pairs: the estimate generalises
        with torch.no_grad():
            held[correlated] = (before, mine.estimate(x, y, mask, gen).mean().item())
    (b1, a1), (b0, a0) = held[True], held[False]
    assert abs(b1) < 0.1 and a1 > 1.0  # trained on dependent pairs: the lower bound rises
    assert abs(a0) < 0.05  # independent: nothing to find


def test_mine_resume_state_round_trip():
    gen = torch.Generator().manual_seed(0)
    a = MINE(seed=1)
    a.train(*_pairs(gen, True), 3, gen)
    b = MINE(seed=2)
    b.load_state_dict(a.state_dict())
    x, y, mask = _pairs(torch.Generator().manual_seed(4), True)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    a.train(x, y, mask, 2, g1)
    b.train(x, y, mask, 2, g2)
    assert all(torch.equal(p, q) for p, q in zip(a.net.parameters(), b.net.parameters()))


# -- UAE -----------------------------------------------------------------------------------------


def test_dual_update_is_the_references():
    c = torch.tensor([1.0, 0.5, 0.01])
    h = torch.tensor([0.0, 0.2, 0.0])
    for t in (0, 3):
        expected = (1 - 0.1 / (t + 1) ** 0.25) * c + 0.1 * h
        assert torch.allclose(dual_update(c, h, t), expected)
    assert (dual_update(torch.tensor([-1.0]), torch.tensor([0.0]), 0) >= 0).all()


def _representation_loss(model, b, delta):
    emb = model.embed(b["input_ids"]).detach()
    att = b["attention_mask"]
    with torch.no_grad():
        z0 = F.normalize(model(inputs_embeds=emb, attention_mask=att).pooled, dim=-1)
        z1 = F.normalize(model(inputs_embeds=emb + delta, attention_mask=att).pooled, dim=-1)
    return 1 - (z0 * z1).sum(-1)


@pytest.mark.parametrize("family", ["lstm", "gru", "bert"])
def test_uae_meets_its_loss_constraint_within_the_ball(family):
    """ℓ(E + δ) ≥ ℓ(E) + κ for every example the search reports feasible (checked independently
    here, for the representation loss whose clean value is 0), ‖δ‖ ≤ ε, and with a budget that
    allows it every example is feasible."""
    model = make_tiny_bert() if family == "bert" else make_tiny_rnn(family)
    b = batch_for(model)
    # a random tiny BERT's pooled output barely moves (pairwise cosines 0.99999; PGD with any ε
    # reaches 1 − cos ≈ 2e-4), so its margin is on that scale
    eps, margin = (4.0, 0.02) if family != "bert" else (2.0, 1e-5)
    method = build_method("uae", {"epsilon": eps, "uae_margin": margin, "steps": 6})
    d = method.perturb(model, b, torch.Generator().manual_seed(0))
    assert (d.flatten(1).norm(dim=1) <= eps + 1e-4).all()
    last = method.last
    assert last["loss_kind"] == "representation"
    loss = _representation_loss(model, b, d)
    assert torch.allclose(loss, last["adv_loss"], atol=1e-5)
    feasible = last["feasible"]
    assert feasible.all(), (loss, feasible)
    assert (loss[feasible] >= last["target"][feasible] - 1e-6).all()
    assert torch.allclose(last["target"], torch.full((len(SENTENCES),), margin), atol=1e-6)


def test_uae_returns_the_feasible_iterate_with_the_largest_mi(tiny_lstm, monkeypatch):
    """Every iterate is recorded; the one returned per example is feasible and has the largest MI
    of the feasible ones (the reference's o_bestattack)."""
    import advviz.methods.uae as uae_mod

    method = build_method("uae", {"epsilon": 3.0, "uae_margin": 0.01, "steps": 5})
    seen = []
    real_loss = method._loss

    def spy(kind, core, out, ids, mask, ref):
        value = real_loss(kind, core, out, ids, mask, ref)
        seen.append(value.detach().clone())
        return value

    mis = []
    real_estimate = uae_mod.MINE.estimate

    def spy_mi(self, x, y, mask, gen):
        value = real_estimate(self, x, y, mask, gen)
        if y.requires_grad:
            mis.append(value.detach().clone())
        return value

    monkeypatch.setattr(method, "_loss", spy)
    monkeypatch.setattr(uae_mod.MINE, "estimate", spy_mi)
    method.perturb(tiny_lstm, batch_for(tiny_lstm), torch.Generator().manual_seed(0))
    losses = torch.stack(seen[1:])  # (K+1, B): seen[0] is the clean value
    mi = torch.stack(mis)  # (K+1, B)
    feasible = losses >= method.last["target"] - 1e-7
    for i in range(len(SENTENCES)):
        if feasible[:, i].any():
            assert method.last["mi"][i] == mi[feasible[:, i], i].max()


def test_uae_is_seeded_and_leaves_the_classifier_alone(tiny_lstm):
    b = batch_for(tiny_lstm)
    before = {k: v.clone() for k, v in tiny_lstm.state_dict().items()}
    d1 = build_method("uae").perturb(tiny_lstm, b, torch.Generator().manual_seed(3))
    d2 = build_method("uae").perturb(tiny_lstm, b, torch.Generator().manual_seed(3))
    d3 = build_method("uae").perturb(tiny_lstm, b, torch.Generator().manual_seed(4))
    assert torch.equal(d1, d2) and not torch.equal(d1, d3)
    assert all(torch.equal(before[k], v) for k, v in tiny_lstm.state_dict().items())
    assert all(p.grad is None for p in tiny_lstm.parameters())


def _with_rar_head(model):
    from advviz.methods.rar import RARHead

    torch.manual_seed(0)
    head = RARHead.for_classifier(model)
    model.extra_state = {"rar": {k: v.detach().clone() for k, v in head.state_dict().items()}}
    model.trained_with = {"name": "rar", "rar_head": "ln-first"}
    return model


@pytest.mark.parametrize("family", ["lstm", "bert"])
def test_uae_loss_follows_the_checkpoint(family):
    """auto: a RAR head's reconstruction loss, CARL's contrastive loss, else 1 − cos; a loss the
    model cannot give is one clear error."""
    model = make_tiny_bert() if family == "bert" else make_tiny_rnn("lstm")
    b = batch_for(model)
    method = build_method("uae", {"epsilon": 1.0, "steps": 2})
    assert method.loss_kind(model) == "representation"
    with pytest.raises(AdvvizError, match="needs a RAR head"):
        build_method("uae", {"uae_loss": "reconstruction"}).loss_kind(model)
    model.trained_with = {"name": "carl", "tau": 0.1}
    assert method.loss_kind(model) == "contrastive"
    method.perturb(model, b, torch.Generator().manual_seed(0))
    assert method.last["loss_kind"] == "contrastive"
    one = batch_for(model, SENTENCES[:1], LABELS[:1])
    method.perturb(model, one, torch.Generator().manual_seed(0))
    assert method.last["loss_kind"] == "representation"  # one example has no negatives
    _with_rar_head(model)
    assert method.loss_kind(model) == "reconstruction"
    d = method.perturb(model, b, torch.Generator().manual_seed(0))
    assert method.last["loss_kind"] == "reconstruction" and torch.isfinite(d).all()
    last = method.last
    assert (last["clean_loss"] > 0).all()  # an untrained head reconstructs badly: CE > 0
    assert torch.allclose(last["target"], last["clean_loss"] + method.config.uae_margin)


def test_uae_training_refuses_a_loss_the_model_cannot_give(tiny_lstm):
    with pytest.raises(AdvvizError, match="needs a RAR head"):
        build_method("uae", {"uae_loss": "reconstruction"}).setup(tiny_lstm)


def test_uae_training_replays_the_clean_dropout_masks(monkeypatch):
    """In training the search's passes replay the clean pass's dropout masks, so at δ = 0 the
    representation loss is exactly 0 (not dropout noise): ℓ(E) is the clean value."""
    model = make_tiny_rnn("lstm", seed=1, dropout=0.5).train()
    method = build_method("uae", {"epsilon": 1.0, "steps": 2})
    method.setup(model)
    method.train_step(model, batch_for(model), lambda loss: loss.backward())
    assert method.last["clean_loss"].abs().max() < 1e-6  # fresh dropout masks would not give 0


def test_uae_state_dict_holds_the_statistics_network_for_resume(tiny_lstm):
    method = build_method("uae", {"epsilon": 1.0, "steps": 2})
    method.setup(tiny_lstm, seed=3)
    tiny_lstm.train()
    method.train_step(tiny_lstm, batch_for(tiny_lstm), lambda loss: loss.backward())
    state = method.state_dict()
    assert "generator" in state and any(k.startswith("mine.net.") for k in state)
    assert any(k.startswith("mine.adam.") for k in state)
    other = build_method("uae", {"epsilon": 1.0, "steps": 2})
    other.setup(tiny_lstm, seed=9)
    other.load_state_dict(state)
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in state.items())
    assert method.extra_modules() == {}  # the statistics network is not part of the model


@pytest.mark.parametrize("name,bad,message", [
    ("vat", {"xi": 0}, "--xi"), ("vat", {"power_iterations": 0}, "--power-iterations"),
    ("vat", {"epsilon": 0}, "--epsilon"), ("uae", {"steps": 0}, "--steps"), ("uae", {"mine_lr": 0}, "--mine-lr"),
    ("uae", {"uae_margin": -1}, "--uae-margin"), ("uae", {"uae_loss": "x"}, "--uae-loss"),
    ("uae", {"norm": "l1"}, "--norm")])
def test_label_free_out_of_range_settings(name, bad, message):
    with pytest.raises(AdvvizError, match=message):
        build_method(name, bad)
