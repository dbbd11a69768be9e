"""The perturbation a model trains on is the one the papers define and the one ``inspect`` shows.

Each test here pins one invariant an audit against the papers and their reference code found
broken or untested: the recurrent layer reads dropout(E) + δ with δ intact; FreeLB follows its
reference (per-example steps, α·g/‖g‖∞ for L∞, δ₀ unprojected, one dropout mask per batch,
parameter gradients Σ_t ∂(ℓ_t/K)/∂θ); FGSM gives ±ε on every coordinate in training; SPGD's M > 1
loop and signed argmax; iAdvT's released-code normalisation; one [UNK] policy for every family.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_packed_sequence

import advviz.methods.freelb as freelb_mod
from advviz.methods import build_method
from advviz.methods.adversarial import input_grad
from advviz.methods.perturb import normalize_l2
from advviz.methods.spgd import keep_counts, project_on_best_direction, top_tokens
from conftest import LABELS, SENTENCES, batch_for, make_tiny_bert, make_tiny_rnn


def _mask(model, b):
    return model.perturbable_mask(b["input_ids"], b["attention_mask"])


class Recorder:
    """Records, for one train step: every ``embed`` output, every recurrent-layer input (unpacked
    to <float>[B,T,D]) and every δ the method produced."""

    def __init__(self, model, method, monkeypatch):
        self.embeds, self.rnn_in, self.deltas = [], [], []
        T = None
        orig_embed = model.embed

        def embed(ids):
            nonlocal T
            T = ids.shape[1]
            e = orig_embed(ids)
            self.embeds.append(e.detach().clone())
            return e

        monkeypatch.setattr(model, "embed", embed)

        def pre_hook(module, args):
            x, _ = pad_packed_sequence(args[0], batch_first=True, total_length=T)
            self.rnn_in.append(x.detach().clone())

        self.handle = model.rnn.register_forward_pre_hook(pre_hook)
        if method.name == "freelb":
            init, step = freelb_mod.freelb_init, freelb_mod.freelb_step

            def rec_init(*a, **kw):
                d = init(*a, **kw)
                self.deltas.append(d.detach().clone())
                return d

            def rec_step(*a, **kw):
                d = step(*a, **kw)
                self.deltas.append(d.detach().clone())
                return d

            monkeypatch.setattr(freelb_mod, "freelb_init", rec_init)
            monkeypatch.setattr(freelb_mod, "freelb_step", rec_step)
        else:
            adversary = method.adversary

            def rec_adversary(*a, **kw):
                d = adversary(*a, **kw)
                self.deltas.append(d.detach().clone())
                return d

            monkeypatch.setattr(method, "adversary", rec_adversary)


OVERRIDES = {"fgsm": {"epsilon": 0.3}, "advt": {"epsilon": 1.0}, "spgd": {"epsilon": 2.0, "k": 3},
             "iadvt": {"epsilon": 1.0, "k": 3}, "freelb": {"steps": 3, "step_size": 0.3, "init_mag": 0.6}}


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("name", list(OVERRIDES))
def test_recurrent_layer_reads_dropout_E_plus_delta_exactly(name, cell, monkeypatch):
    model = make_tiny_rnn(cell, seed=3, dropout=0.5).train()
    method = build_method(name, OVERRIDES[name])
    method.setup(model)
    rec = Recorder(model, method, monkeypatch)
    b = batch_for(model)
    torch.manual_seed(0)
    method.train_step(model, b, lambda loss: loss.backward())
    rec.handle.remove()
    real = b["attention_mask"].bool()
    raw = model.embedding(b["input_ids"]).detach()
    # dropout really acted on what embed returned: zeros and ×2 coordinates
    assert ((rec.embeds[0] == 0) & (raw != 0))[real].any()
    if name == "freelb":  # K passes, each on dropout(E) + δ_t, all with one dropout mask
        assert len(rec.rnn_in) == len(rec.embeds) == len(rec.deltas) == 3
        pairs = zip(rec.rnn_in, rec.embeds, rec.deltas)
        for e in rec.embeds[1:]:
            assert torch.equal(e, rec.embeds[0])
    else:  # the clean pass, then the adversarial pass on the clean pass's dropout(E)
        assert len(rec.embeds) == 1 and len(rec.deltas) == 1
        assert torch.equal(rec.rnn_in[0][real], rec.embeds[0][real])
        pairs = [(rec.rnn_in[-1], rec.embeds[0], rec.deltas[0])]
    for rnn_in, e, d in pairs:
        assert d[real].abs().sum() > 0
        assert torch.equal(rnn_in[real], (e + d)[real])


def test_fgsm_in_training_moves_every_perturbable_coordinate_by_eps_on_the_lstm(monkeypatch):
    model = make_tiny_rnn("lstm", seed=3, dropout=0.5).train()
    method = build_method("fgsm", {"epsilon": 0.3})
    rec = Recorder(model, method, monkeypatch)
    b = batch_for(model)
    method.train_step(model, b, lambda loss: loss.backward())
    rec.handle.remove()
    d, m = rec.deltas[0], _mask(model, b)
    # an example whose head dropout silenced every active unit has ∂L/∂E = 0 and Δ = 0, as FGSM says
    live = d.flatten(1).abs().sum(1) > 0  # (B,)
    assert live.sum() >= len(SENTENCES) // 2
    m_live = m & live.unsqueeze(1)
    assert torch.equal(d[m_live].abs(), torch.full_like(d[m_live], 0.3))  # the dropped coordinates too
    assert (d[~m] == 0).all()


def test_fgsm_on_minilm_in_training_gives_plus_minus_eps_and_the_encoder_reads_it(monkeypatch):
    model = make_tiny_bert(seed=1, dropout=0.3).train()
    method = build_method("fgsm", {"epsilon": 0.05})
    deltas, seen = [], []
    adversary = method.adversary
    monkeypatch.setattr(method, "adversary", lambda *a: deltas.append(adversary(*a)) or deltas[-1])
    hook = model.encoder.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(kwargs["inputs_embeds"].detach().clone()), with_kwargs=True)
    b = batch_for(model)
    method.train_step(model, b, lambda loss: loss.backward())
    hook.remove()
    d, m = deltas[0], _mask(model, b)
    assert torch.equal(d[m].abs(), torch.full_like(d[m], 0.05))
    assert (d[~m] == 0).all()  # [CLS], [SEP], padding
    assert torch.equal(seen[1] - seen[0], d) or torch.allclose(seen[1] - seen[0], d, atol=1e-7, rtol=0)


# -- FreeLB against its reference ----------------------------------------------------------------


def _freelb_deltas(model, cfg, monkeypatch, b=None):
    method = build_method("freelb", cfg)
    method.setup(model)
    deltas = []
    init, step = freelb_mod.freelb_init, freelb_mod.freelb_step
    monkeypatch.setattr(freelb_mod, "freelb_init", lambda *a: deltas.append(init(*a)) or deltas[-1])
    monkeypatch.setattr(freelb_mod, "freelb_step", lambda *a: deltas.append(step(*a)) or deltas[-1])
    b = b or batch_for(model)
    method.train_step(model, b, lambda loss: loss.backward())
    return [d.detach() for d in deltas], b


@pytest.mark.parametrize("norm,eps,gamma", [("l2", 0.4, 0.3), ("linf", 0.05, 0.04)])
def test_freelb_training_delta_stays_in_the_ball_at_every_step(norm, eps, gamma, tiny_model, monkeypatch):
    tiny_model.train()
    deltas, _ = _freelb_deltas(tiny_model, {"steps": 5, "step_size": 0.3, "epsilon": eps, "init_mag": gamma,
                                            "norm": norm}, monkeypatch)
    assert len(deltas) == 5
    for d in deltas:
        n = d.flatten(1).norm(dim=1) if norm == "l2" else d.flatten(1).abs().amax(dim=1)
        assert (n <= eps * (1 + 1e-6)).all()
    assert (deltas[-1].flatten(1).norm(dim=1) > 0).all()


def test_freelb_does_not_project_the_random_start_as_in_the_reference(monkeypatch):
    model = make_tiny_rnn("lstm", seed=1).train()
    deltas, b = _freelb_deltas(model, {"steps": 2, "step_size": 0.1, "epsilon": 0.1, "init_mag": 5.0},
                               monkeypatch)
    m = _mask(model, b)
    expected = freelb_mod.freelb_init(torch.zeros(*b["input_ids"].shape, 8), m, 5.0, "l2",
                                      torch.Generator().manual_seed(0))  # setup's seed
    assert torch.equal(deltas[0], expected)  # as drawn: ‖δ₀‖ ≈ γ/√3 ≫ ε
    assert (deltas[0].flatten(1).norm(dim=1) > 0.1).all()
    assert (deltas[1].flatten(1).norm(dim=1) <= 0.1 * (1 + 1e-6)).all()  # Π_ε from δ₁ on


def test_freelb_l2_ascent_is_normalised_per_example(monkeypatch):
    model = make_tiny_rnn("lstm", seed=1).train()
    b = batch_for(model)
    deltas, _ = _freelb_deltas(model, {"steps": 2, "step_size": 0.25, "epsilon": 0.0, "init_mag": 0.2},
                               monkeypatch, b)
    step = (deltas[1] - deltas[0]).flatten(1).norm(dim=1)  # unbounded: each example moved by α
    assert torch.allclose(step, torch.full_like(step, 0.25), atol=1e-6)


def test_freelb_linf_steps_by_gradient_over_its_max_not_sign(monkeypatch):
    model = make_tiny_rnn("lstm", seed=1).train()
    b = batch_for(model)
    deltas, _ = _freelb_deltas(model, {"steps": 2, "step_size": 0.01, "epsilon": 0.0, "init_mag": 0.0,
                                       "norm": "linf"}, monkeypatch, b)
    step = deltas[1] - deltas[0]
    m = _mask(model, b)
    assert torch.allclose(step.flatten(1).abs().amax(dim=1), torch.full((len(SENTENCES),), 0.01), atol=1e-9)
    assert (step[m].abs() < 0.01 * (1 - 1e-3)).float().mean() > 0.5  # most coordinates move less than α
    # with a bound, δ is clamped to [−ε, ε] per coordinate
    deltas, _ = _freelb_deltas(model, {"steps": 3, "step_size": 0.5, "epsilon": 0.02, "init_mag": 0.0,
                                       "norm": "linf"}, monkeypatch, b)
    assert deltas[-1].abs().max() == pytest.approx(0.02)


def _reference_freelb_grads(model, b, K, alpha, eps, gamma, seed):
    """FreeLB's L2 training step written out from ``run_glue_freelb.py``, independently of advviz:
    ℓ_t = CE/K backpropagated each step, δ ← δ + α·g/‖g‖ per example, rescaled into the ε-ball."""
    gen = torch.Generator().manual_seed(seed)
    ids, att, y = b["input_ids"], b["attention_mask"], b["labels"]
    E = model.embedding(ids)
    m = att.to(E.dtype).unsqueeze(2)
    u = torch.rand(E.shape, generator=gen) * 2 - 1
    delta = u * m * (gamma / torch.sqrt(att.sum(1).to(E.dtype) * E.shape[-1])).view(-1, 1, 1)
    for t in range(K):
        delta = delta.detach().requires_grad_()
        E = model.embedding(ids)
        loss = F.cross_entropy(model.forward_embeds(E + delta, att).logits, y) / K
        loss.backward()
        if t == K - 1:
            break
        g = delta.grad
        delta = delta + alpha * g / g.flatten(1).norm(dim=1).clamp(min=1e-8).view(-1, 1, 1)
        n = delta.flatten(1).norm(dim=1)
        delta = delta * torch.where(n > eps, eps / n, torch.ones_like(n)).view(-1, 1, 1)
    return {k: p.grad.clone() for k, p in model.named_parameters()}


def test_freelb_parameter_gradients_equal_the_reference_loop():
    K, alpha, eps, gamma = 3, 0.3, 0.5, 0.6
    model = make_tiny_rnn("lstm", seed=4).train()  # no dropout: both loops see the same network
    b = batch_for(model)
    torch.manual_seed(9)
    method = build_method("freelb", {"steps": K, "step_size": alpha, "epsilon": eps, "init_mag": gamma})
    seed = 7
    method.setup(model, seed=seed)
    method.train_step(model, b, lambda loss: loss.backward())
    ours = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    ref = _reference_freelb_grads(model, b, K, alpha, eps, gamma, seed)
    for k in ref:
        torch.testing.assert_close(ours[k], ref[k], rtol=1e-5, atol=1e-7, msg=k)


@pytest.mark.parametrize("family", ["lstm", "bert"])
def test_freelb_uses_one_dropout_mask_for_all_ascent_steps(family, monkeypatch):
    """With shared masks, two ascent steps at the same δ give the same logits; fresh masks do not."""
    model = make_tiny_rnn("lstm", seed=2, dropout=0.5) if family == "lstm" else make_tiny_bert(seed=2, dropout=0.3)
    model.train()
    b = batch_for(model)
    for masks, same in (("shared", True), ("fresh", False)):
        logits = []
        method = build_method("freelb", {"steps": 3, "step_size": 1e-30, "init_mag": 0.0, "dropout_masks": masks})
        method.setup(model)
        monkeypatch.setattr(method, "extra_loss",
                            lambda model, batch, out, t: (logits.append(out.logits.detach()), (None, {}))[1])
        method.train_step(model, b, lambda loss: loss.backward())
        model.zero_grad()
        assert all(torch.equal(x, logits[0]) for x in logits[1:]) is same, masks


# -- SPGD, iAdvT ---------------------------------------------------------------------------------


def test_spgd_with_several_steps_follows_algorithm_1(tiny_model):
    eps, M, sparsity = 3.0, 3, 0.5
    method = build_method("spgd", {"epsilon": eps, "steps": M, "k": 4, "sparsity": sparsity})
    b = batch_for(tiny_model)
    m = _mask(tiny_model, b)
    d = method.perturb(tiny_model, b)
    emb = tiny_model.embed(b["input_ids"]).detach()
    r = torch.zeros_like(emb)
    for _ in range(M):  # M AdvT steps of ε/M each, no projection in between
        g, _ = input_grad(tiny_model, emb, r, b["attention_mask"], b["labels"])
        r = r + (eps / M) * normalize_l2(g, m)
    U, _ = method.directions(tiny_model, b["input_ids"], m)
    dots = torch.einsum("btkd,btd->btk", U, r)
    best = dots.argmax(-1)
    u = torch.stack([U[i, t, best[i, t]] for i in range(U.shape[0]) for t in range(U.shape[1])]).view_as(r)
    keep = top_tokens(r.norm(dim=-1), m, keep_counts(m.sum(1), sparsity))
    expected = dots.gather(-1, best.unsqueeze(-1)) * u * keep.unsqueeze(-1)
    torch.testing.assert_close(d, expected, rtol=1e-5, atol=1e-6)
    assert (r.flatten(1).norm(dim=1) <= eps + 1e-4).all()
    assert not torch.allclose(r, eps * normalize_l2(input_grad(tiny_model, emb, torch.zeros_like(emb),
                                                               b["attention_mask"], b["labels"])[0], m))


def test_spgd_best_direction_is_the_signed_argmax():
    r = torch.tensor([[[1.0, 0.0], [-1.0, -0.2]]])  # (1, T=2, D=2)
    U = torch.tensor([[[[-1.0, 0.0], [0.6, 0.8], [0.0, -1.0]],  # dots  -1.0, 0.6, 0.0
                       [[1.0, 0.0], [0.0, 1.0], [0.8, 0.6]]]])  # dots  -1.0, -0.2, -0.92 (all negative)
    r_hat, best = project_on_best_direction(r, U)
    assert best.tolist() == [[1, 1]]  # not the largest |r·u| (index 0 in both rows)
    torch.testing.assert_close(r_hat, torch.tensor([[[0.36, 0.48], [0.0, -0.2]]]))


def test_iadvt_follows_the_released_code_by_default(tiny_model):
    eps = 1.5
    method = build_method("iadvt", {"k": 4, "epsilon": eps})
    assert method.config.iadvt_norm == "code"
    b = batch_for(tiny_model)
    m = _mask(tiny_model, b)
    d = method.perturb(tiny_model, b)
    torch.testing.assert_close(d.flatten(1).norm(dim=1), torch.full((len(SENTENCES),), eps))  # ‖δ‖ = ε
    emb = tiny_model.embed(b["input_ids"]).detach()
    g = input_grad(tiny_model, emb, torch.zeros_like(emb), b["attention_mask"], b["labels"])[0]
    U, _ = method.directions(tiny_model, b["input_ids"], m)
    ga = torch.einsum("btkd,btd->btk", U, g)
    alpha = ga / ga.norm(dim=-1, keepdim=True).clamp(min=1e-12)  # per token (F.normalize(axis=1))
    dd = torch.einsum("btk,btkd->btd", alpha, U) * m.unsqueeze(-1)
    torch.testing.assert_close(d, eps * dd / dd.flatten(1).norm(dim=1).view(-1, 1, 1), rtol=1e-5, atol=1e-6)
    paper = build_method("iadvt", {"k": 4, "epsilon": eps, "iadvt_norm": "paper"}).perturb(tiny_model, b)
    assert not torch.allclose(paper.flatten(1).norm(dim=1), torch.full((len(SENTENCES),), eps), atol=1e-3)


# -- one [UNK] policy ------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["lstm", "bert"])
def test_unknown_words_are_perturbed_in_every_family_structural_tokens_never(family):
    model = make_tiny_rnn("lstm") if family == "lstm" else make_tiny_bert()
    tok = model.tokenizer
    text = "a charming zzyzx journey ☃"  # an out-of-vocabulary word for both tokenizers
    b = batch_for(model, [text, "an awful waste of time"], [1, 0])
    ids, m = b["input_ids"], _mask(model, b)
    unk = ids == tok.unk_id
    assert unk.any()
    assert m[unk].all()
    assert not m[~b["attention_mask"].bool()].any()
    for sid in tok.special_ids:
        assert not m[ids == sid].any()
    assert tok.unk_id not in tok.special_ids
    d = build_method("advt", {"epsilon": 1.0}).perturb(model, b)
    assert (d[unk].norm(dim=-1) > 0).all()
    if family == "bert":
        cls_sep = (ids == tok.hf.cls_token_id) | (ids == tok.hf.sep_token_id)
        assert cls_sep.any() and not m[cls_sep].any()


def test_attacks_see_plain_embeddings_in_eval_mode():
    """The heatmap's δ (eval mode) is computed on E itself: embed has no effect there."""
    model = make_tiny_rnn("lstm", dropout=0.5).eval()
    b = batch_for(model)
    assert torch.equal(model.embed(b["input_ids"]), model.embedding(b["input_ids"]))
