"""Properties of every adversary on tiny models of each family (and a slow real-data run)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from advviz.errors import AdvvizError
from advviz.methods import METHODS, attacks, build_method
from advviz.methods.adversarial import input_grad
from advviz.methods.freelb import freelb_init
from advviz.methods.iadvt import iadvt_weights
from advviz.methods.spgd import keep_counts, project_on_best_direction, top_tokens
from advviz.methods.perturb import normalize_l2
from conftest import LABELS, SENTENCES, batch_for, make_tiny_bert, make_tiny_rnn

MINE = ["advt", "fgsm", "iadvt", "spgd", "pgd", "freelb"]


def _mask(model, b):
    return model.perturbable_mask(b["input_ids"], b["attention_mask"])


def _grad0(model, b):
    emb = model.embed(b["input_ids"]).detach()
    return input_grad(model, emb, torch.zeros_like(emb), b["attention_mask"], b["labels"])[0]


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# -- the registry contract ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(attacks()))
def test_attack_contract(name, tiny_model):
    """Every registered attack: shape kept, zero off-mask, finite, seeded, weights untouched."""
    method = build_method(name)
    b = batch_for(tiny_model)
    before = _snapshot(tiny_model)
    d1 = method.perturb(tiny_model, b, torch.Generator().manual_seed(3))
    d2 = method.perturb(tiny_model, b, torch.Generator().manual_seed(3))
    emb = tiny_model.embed(b["input_ids"])
    assert d1.shape == emb.shape and torch.isfinite(d1).all()
    assert torch.equal(d1, d2)
    assert (d1[~_mask(tiny_model, b)] == 0).all()  # padding / [CLS] / [SEP] untouched
    after = tiny_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in tiny_model.parameters())


@pytest.mark.parametrize("name", sorted(METHODS))
def test_train_step_contract(name, tiny_model):
    """Every registered method (CARL's L_D switched on from the first step): a finite scalar
    loss, clean logits, gradients on every trainable parameter that the loss reaches, and
    the same on a second step (CARL's banks, RAR's head)."""
    method = build_method(name, {"carl_start": 0, "negatives": 3} if "carl" in name else {})
    method.setup(tiny_model, SimpleNamespace(texts=SENTENCES, labels=LABELS))
    tiny_model.train()
    extras = list(method.extra_modules().values())
    for step in (1, 2):
        for m in [tiny_model, *extras]:
            m.zero_grad()
        out = method.train_step(tiny_model, batch_for(tiny_model), lambda loss: loss.backward())
        method.on_step_end(tiny_model, step)
        assert out.loss.dim() == 0 and math.isfinite(out.loss.item())
        assert out.logits.shape == (len(SENTENCES), 2)
        assert tiny_model.embedding_layer().weight.grad is not None
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny_model.head.parameters())
        for m in extras:
            assert all(p.grad is not None for p in m.parameters())
        if "carl" in name:
            assert out.logs["carl_loss"] > 0


def test_every_registered_method_has_flagged_valid_defaults():
    for cls in METHODS.values():
        cls.Config()  # defaults validate
        assert cls.name and isinstance(cls.name, str)


@pytest.mark.parametrize("name,bad", [("advt", {"epsilon": 0}), ("fgsm", {"adv_weight": 1.5}),
                                      ("spgd", {"sparsity": 1.0}), ("spgd", {"k": 0}), ("pgd", {"steps": 0}),
                                      ("pgd", {"norm": "l1"}), ("iadvt", {"epsilon": -1.0})])
def test_out_of_range_hyperparameters(name, bad):
    with pytest.raises(AdvvizError, match=name):
        build_method(name, bad)


# -- per-method properties, hand-checked -------------------------------------------------------


def test_advt_is_normalised_gradient(tiny_model):
    b = batch_for(tiny_model)
    d = build_method("advt", {"epsilon": 2.0}).perturb(tiny_model, b)
    g = _grad0(tiny_model, b) * _mask(tiny_model, b).unsqueeze(-1)
    assert torch.allclose(d.flatten(1).norm(dim=1), torch.full((len(SENTENCES),), 2.0), atol=1e-4)
    expected = 2.0 * g / g.flatten(1).norm(dim=1).view(-1, 1, 1)
    assert torch.allclose(d, expected, atol=1e-5)


def test_fgsm_is_sign_and_mixes_losses(tiny_lstm):
    b = batch_for(tiny_lstm)
    d = build_method("fgsm", {"epsilon": 0.3}).perturb(tiny_lstm, b)
    g = _grad0(tiny_lstm, b)
    m = _mask(tiny_lstm, b).unsqueeze(-1)
    assert torch.equal(d, 0.3 * g.sign() * m)
    method = build_method("fgsm", {"adv_weight": 0.25})
    out = method.train_step(tiny_lstm, b, lambda loss: None)
    assert out.loss.item() == pytest.approx(0.25 * out.logs["clean_loss"] + 0.75 * out.logs["adv_loss"], rel=1e-5)


def test_iadvt_in_span_of_neighbour_directions(tiny_model):
    method = build_method("iadvt", {"k": 4, "epsilon": 3.0})
    b = batch_for(tiny_model)
    mask = _mask(tiny_model, b)
    d = method.perturb(tiny_model, b)
    U, nb = method.directions(tiny_model, b["input_ids"], mask)  # (B,T,K,D)
    for bi, ti in mask.nonzero().tolist():
        A = U[bi, ti].T  # (D, K)
        coef = torch.linalg.lstsq(A.double(), d[bi, ti].double().unsqueeze(1)).solution
        resid = (A.double() @ coef).squeeze(1) - d[bi, ti].double()
        assert resid.norm() < 1e-4 * max(1.0, float(d[bi, ti].norm()))
        assert ids_ok(nb[bi, ti], b["input_ids"][bi, ti])
    alpha = iadvt_weights(_grad0(tiny_model, b), U, mask, 3.0)
    assert torch.allclose(alpha.flatten(1).norm(dim=1), torch.full((len(SENTENCES),), 3.0), atol=1e-4)


def ids_ok(neigh, tok):
    return bool((neigh != tok).all() and (neigh >= 0).all())


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.75, 0.9])
def test_spgd_sparsity_and_single_direction(tiny_model, sparsity):
    method = build_method("spgd", {"k": 5, "sparsity": sparsity, "epsilon": 4.0})
    b = batch_for(tiny_model)
    mask = _mask(tiny_model, b)
    d = method.perturb(tiny_model, b)
    touched = d.norm(dim=-1) > 0
    n = mask.sum(1)
    expected = torch.minimum(n, torch.clamp(torch.floor((1 - sparsity) * n.double() + 1e-9).long(), min=1))
    assert touched.sum(1).tolist() == expected.tolist()
    U, _ = method.directions(tiny_model, b["input_ids"], mask)
    for bi, ti in touched.nonzero().tolist():
        cos = torch.nn.functional.cosine_similarity(U[bi, ti], d[bi, ti].unsqueeze(0), dim=-1)  # (K,)
        assert cos.abs().max() > 1 - 1e-5  # parallel to one neighbour direction
    # the kept tokens are those with the largest raw AdvT norms (Algorithm 1's TopK)
    raw = 4.0 * normalize_l2(_grad0(tiny_model, b), mask)
    assert torch.equal(touched, top_tokens(raw.norm(dim=-1), mask, expected))
    assert (d.flatten(1).norm(dim=1) <= 4.0 + 1e-4).all()


def test_keep_counts_by_hand():
    n = torch.tensor([0, 1, 3, 4, 8, 10, 100])
    assert keep_counts(n, 0.75).tolist() == [0, 1, 1, 1, 2, 2, 25]
    assert keep_counts(torch.tensor([10]), 0.7).tolist() == [3]  # (1−0.7)·10 is 3.0000000000000004
    assert keep_counts(torch.tensor([10]), 0.0).tolist() == [10]


def test_project_on_best_direction_by_hand():
    U = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])  # (1,1,K=2,D=2)
    r = torch.tensor([[[0.3, 0.5]]])
    r_hat, best = project_on_best_direction(r, U)
    assert best.item() == 1 and torch.allclose(r_hat, torch.tensor([[[0.0, 0.5]]]))


@pytest.mark.parametrize("norm,eps", [("l2", 0.2), ("linf", 0.05)])
def test_pgd_stays_in_ball(tiny_model, norm, eps):
    b = batch_for(tiny_model)
    d = build_method("pgd", {"epsilon": eps, "norm": norm, "steps": 4, "init_mag": 0.5}).perturb(
        tiny_model, b, torch.Generator().manual_seed(0))
    if norm == "l2":
        assert (d.flatten(1).norm(dim=1) <= eps + 1e-5).all()
        assert d.flatten(1).norm(dim=1).min() > 0.9 * eps  # 2.5ε/K steps reach the boundary
    else:
        assert d.abs().max() <= eps + 1e-7


def test_pgd_increases_loss(tiny_lstm):
    b = batch_for(tiny_lstm)
    emb = tiny_lstm.embed(b["input_ids"]).detach()
    clean = input_grad(tiny_lstm, emb, torch.zeros_like(emb), b["attention_mask"], b["labels"])[1]
    d = build_method("pgd", {"epsilon": 1.0}).perturb(tiny_lstm, b)
    adv = input_grad(tiny_lstm, emb, d, b["attention_mask"], b["labels"])[1]
    assert adv > clean


def test_freelb_ball_and_init_distribution(tiny_model):
    b = batch_for(tiny_model)
    d = build_method("freelb", {"epsilon": 0.3, "step_size": 0.5, "steps": 3}).perturb(
        tiny_model, b, torch.Generator().manual_seed(0))
    assert (d.flatten(1).norm(dim=1) <= 0.3 + 1e-5).all()
    # δ₀ = U(−1,1)·mask·γ/√(L·D): bounded by γ/√(L·D), mean 0, variance (γ²/(L·D))/3
    emb = torch.zeros(64, 50, 40)
    mask = torch.ones(64, 50, dtype=torch.bool)
    mask[:, 40:] = False
    d0 = freelb_init(emb, mask, 0.6, "l2", torch.Generator().manual_seed(1))
    scale = 0.6 / math.sqrt(40 * 40)
    vals = d0[:, :40].flatten()
    assert vals.abs().max() <= scale and (d0[:, 40:] == 0).all()
    assert abs(vals.mean().item()) < 0.01 * scale
    assert vals.var().item() == pytest.approx(scale**2 / 3, rel=0.02)


def test_neighbour_table_refresh(tiny_lstm):
    method = build_method("spgd", {"refresh_every": 2})
    method.setup(tiny_lstm)
    first = method._index
    method.on_step_end(tiny_lstm, 1)
    assert method._index is first
    method.on_step_end(tiny_lstm, 2)
    assert method._index is not first


@pytest.mark.parametrize("family", ["lstm", "bert"])
def test_attack_ignores_dropout_mode_but_training_uses_it(family):
    model = (make_tiny_rnn("lstm", dropout=0.5) if family == "lstm" else make_tiny_bert(dropout=0.3)).eval()
    b = batch_for(model, SENTENCES[:2], LABELS[:2])
    torch.manual_seed(0)
    d = build_method("advt").perturb(model, b)  # eval mode: no dropout, deterministic
    torch.manual_seed(1)
    assert torch.equal(d, build_method("advt").perturb(model, b))
    # training: the same step on the same weights draws different dropout masks per seed
    steps = []
    for seed in (0, 1):
        model.train()
        torch.manual_seed(seed)
        steps.append(build_method("advt").train_step(model, b, lambda loss: None))
    assert not torch.equal(steps[0].logits, steps[1].logits)
    with torch.no_grad():
        clean = model.eval()(b["input_ids"], b["attention_mask"]).logits
    assert not torch.allclose(steps[0].logits, clean)


# -- a real checkpoint ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["spgd"])
def test_real_lstm_trains_a_few_steps(name, data_dir, tmp_path):
    from advviz.train import TrainConfig, Trainer

    cfg = TrainConfig(dataset="sst2-sent", arch="lstm", method=name, epochs=1, max_train=300, max_steps=6,
                      max_eval=64, batch_size=50, out=str(tmp_path / name), data_dir=str(data_dir))
    result = Trainer(cfg, build_method(name), progress=False).fit()
    assert math.isfinite(result.metrics["dev_loss"])
    losses = [line["loss"] for line in result.log if "loss" in line]
    assert all(math.isfinite(v) for v in losses)


@pytest.fixture(scope="module")
def real_lstm(data_dir, tmp_path_factory):
    """A GloVe-50d LSTM trained for a few steps on 300 real SST-2 sentences, reloaded from disk."""
    import advviz
    from advviz.data import load_dataset
    from advviz.train import TrainConfig, Trainer

    out = tmp_path_factory.mktemp("real") / "lstm"
    cfg = TrainConfig(dataset="sst2-sent", arch="lstm", epochs=1, max_train=300, max_steps=5, max_eval=32,
                      out=str(out), data_dir=str(data_dir))
    Trainer(cfg, build_method("baseline"), progress=False).fit()
    dev = load_dataset("sst2-sent", "dev", str(data_dir)).subset(16, 0)
    model = advviz.load(out).classifier
    return model, batch_for(model, dev.texts, dev.labels)


@pytest.mark.slow
def test_properties_on_a_real_checkpoint(real_lstm):
    model, b = real_lstm
    mask = _mask(model, b)
    before = _snapshot(model)
    d = build_method("spgd", {"epsilon": 2.0}).perturb(model, b)
    n = mask.sum(1)
    assert ((d.norm(dim=-1) > 0).sum(1) == torch.clamp(torch.floor(0.25 * n.double() + 1e-9).long(), min=1)).all()
    method = build_method("iadvt", {"epsilon": 1.2})
    d = method.perturb(model, b)
    U, _ = method.directions(model, b["input_ids"], mask)
    for bi, ti in mask.nonzero().tolist()[:40]:
        A = U[bi, ti].T.double()  # (D=50, K=15): the span is a 15-d subspace of 50-d space
        coef = torch.linalg.lstsq(A, d[bi, ti].double().unsqueeze(1)).solution
        assert ((A @ coef).squeeze(1) - d[bi, ti].double()).norm() < 1e-4
    for eps in (0.02, 0.1):
        d = build_method("pgd", {"epsilon": eps}).perturb(model, b)
        assert (d.flatten(1).norm(dim=1) <= eps + 1e-6).all()
    d = build_method("advt", {"epsilon": 0.4}).perturb(model, b)
    assert torch.allclose(d.flatten(1).norm(dim=1), torch.full((16,), 0.4), atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_neighbour_tables_survive_resume(tiny_lstm):
    method = build_method("spgd", {"k": 3})
    method.setup(tiny_lstm)
    ids = torch.arange(2, len(tiny_lstm.tokenizer.vocab))
    before = method._index.neighbors_of(ids).clone()
    state = method.state_dict()
    with torch.no_grad():
        tiny_lstm.embedding.weight.mul_(torch.rand_like(tiny_lstm.embedding.weight))  # training moved on
    resumed = build_method("spgd", {"k": 3})
    resumed.setup(tiny_lstm)  # the Trainer sets up, then restores
    resumed.load_state_dict(state)
    assert torch.equal(resumed._index.neighbors_of(ids), before)
    assert 0 in resumed._index.exclude  # exclusions kept
