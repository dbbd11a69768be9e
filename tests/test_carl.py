"""CARL (Qiu et al. 2021, §3.2): memory banks (Eq. 5), different-label negatives, the contrastive
loss (Eqs. 2–4, NCE and InfoNCE), the warm start, and FreeLB's L_C-only ascent under extra terms."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from advviz.errors import AdvvizError
from advviz.methods.memory_bank import MemoryBank, NegativeSampler
from advviz.methods import METHODS, build_method
from advviz.methods.carl import (CARL, CARLConfig, contrastive_logits, default_negatives, infonce_loss, nce_log_z,
                                 nce_loss)
from advviz.methods.freelb import FreeLB, FreeLBConfig
from conftest import LABELS, SENTENCES, batch_for, make_tiny_rnn

TRAIN = SimpleNamespace(texts=SENTENCES, labels=LABELS)


def _backward(loss):
    loss.backward()


# -- Eq. 5 -----------------------------------------------------------------------------------


def test_bank_update_follows_eq5_exactly():
    bank = MemoryBank(4, 2)
    bank.fill(torch.tensor([0, 1, 2, 3]), torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [4.0, -4.0]]))
    bank.update(torch.tensor([1, 3]), torch.tensor([[1.0, 0.0], [0.0, 0.0]]), momentum=0.5)
    # B[1] = 0.5·(0,1) + 0.5·(1,0) = (0.5, 0.5); B[3] = 0.5·(4,−4) + 0.5·0 = (2, −2); others untouched
    assert bank.memory.tolist() == [[1.0, 0.0], [0.5, 0.5], [2.0, 2.0], [2.0, -2.0]]
    bank.update(torch.tensor([0]), torch.tensor([[0.0, 1.0]]), momentum=0.75)
    assert bank.memory[0].tolist() == [0.75, 0.25]  # 0.75·(1,0) + 0.25·(0,1)
    # read() L2-normalises without changing the stored rows
    torch.testing.assert_close(bank.read(torch.tensor([3])), torch.tensor([[1, -1.0]]) / math.sqrt(2))
    assert bank.memory[3].tolist() == [2.0, -2.0]


# -- negatives ---------------------------------------------------------------------------------


def test_negatives_never_share_the_anchor_label_and_are_reproducible():
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2, 0])
    s = NegativeSampler(labels)
    anchors = torch.tensor([0, 1, 2, 2, 0, 1])
    ids = s.sample(anchors, 500, torch.Generator().manual_seed(3))
    assert ids.shape == (6, 500)
    assert (labels[ids] != anchors.unsqueeze(1)).all()
    # every different-label example is reachable; same seed -> same draw
    assert set(ids[0].tolist()) == {2, 3, 4, 5, 6}
    assert torch.equal(ids, s.sample(anchors, 500, torch.Generator().manual_seed(3)))
    assert s.pool_size(torch.tensor([0, 2])).tolist() == [5.0, 5.0]


def test_single_label_data_has_no_negatives():
    with pytest.raises(AdvvizError, match="two labels"):
        NegativeSampler([1, 1, 1])


def test_default_negatives_scale_with_the_data_set():
    assert default_negatives(67349) == 16000  # the paper's SST-2 setting
    assert default_negatives(6920) == round(16000 * 6920 / 67349)
    assert default_negatives(3) == 1 and default_negatives(10**7) == 16000


# -- the loss (Eqs. 2–4) -------------------------------------------------------------------------


def _method_with_banks(kind: str, neg_orig: torch.Tensor, neg_adv: torch.Tensor, tau=0.07,
                       positive: str = "live") -> CARL:
    """A CARL whose banks hold ``neg_*`` (rows 1..m, label 1); row 0 is the anchor (label 0)."""
    m = CARL(CARLConfig(tau=tau, carl_loss=kind, negatives=len(neg_orig), carl_positive=positive))
    n, d = len(neg_orig) + 1, neg_orig.shape[1]
    m.sampler = NegativeSampler([0] + [1] * (n - 1))
    m.bank_orig, m.bank_adv = MemoryBank(n, d), MemoryBank(n, d)
    m.bank_orig.fill(torch.arange(1, n), neg_orig)
    m.bank_adv.fill(torch.arange(1, n), neg_adv)
    return m


def _fill_anchor_row(m: CARL, r: torch.Tensor) -> CARL:
    m.bank_orig.fill(torch.tensor([0]), r)
    m.bank_adv.fill(torch.tensor([0]), r)
    return m


@pytest.mark.parametrize("positive", ["live", "bank"])
@pytest.mark.parametrize("kind", ["infonce", "nce"])
def test_loss_is_minimal_when_radv_equals_r_and_negatives_are_far(kind, positive):
    g = torch.Generator().manual_seed(0)
    d, mneg = 8, 6
    r = F.normalize(torch.randn(1, d, generator=g), dim=-1)
    far = -r.repeat(mneg, 1)  # antipodal: h = e^{-1/τ}, as far as the unit sphere allows
    near = F.normalize(r.repeat(mneg, 1) + 0.3 * torch.randn(mneg, d, generator=g), dim=-1)
    neg_ids = torch.arange(1, mneg + 1).view(1, -1)
    y = torch.tensor([0])

    def loss(r_adv, negs):
        m = _method_with_banks(kind, negs, negs, tau=0.5, positive=positive)  # τ=0.07 underflows float32
        _fill_anchor_row(m, r)  # the anchor's own bank rows hold R (what Eq. 5 converges to)
        return float(m.contrastive_loss(r, F.normalize(r_adv, dim=-1), y, neg_ids, torch.tensor([0]))[0])

    best = loss(r.clone(), far)
    for _ in range(5):
        moved = r + 0.5 * torch.randn(1, d, generator=g)
        assert loss(moved, far) > best  # R_adv away from R costs
        assert loss(r.clone(), near) > best  # negatives close to R cost
    if kind == "infonce" and positive == "live":
        # hand value: each side is −log e^{1/τ}/(e^{1/τ} + m e^{−1/τ}) = log(1 + m e^{−2/τ})
        assert best == pytest.approx(2 * math.log1p(mneg * math.exp(-2 / 0.5)), rel=1e-5)


def test_nce_hand_value_and_small_tau_is_finite():
    pos, neg = torch.tensor([2.0]), torch.tensor([[0.0, 1.0]])
    pool = torch.tensor([4.0])
    # P = e^{s − log Z}; m·P_n = 2/4 = 0.5
    mpn = 0.5
    expect = -(math.log(math.e**2 / (math.e**2 + mpn)) + math.log(mpn / (1 + mpn)) + math.log(mpn / (math.e + mpn)))
    assert float(nce_loss(pos, neg, 0.0, pool)) == pytest.approx(expect, rel=1e-6)
    a = F.normalize(torch.randn(3, 4), dim=-1)
    p_, n_ = contrastive_logits(a, a, F.normalize(torch.randn(3, 5, 4), dim=-1), tau=1e-3)  # logits ~1000
    pool = torch.full((3,), 10.0)
    assert torch.isfinite(nce_loss(p_, n_, nce_log_z(n_, pool), pool))
    assert torch.isfinite(infonce_loss(p_, n_))
    # Ẑ per anchor: |pool| · mean_j exp(neg_j)
    torch.testing.assert_close(nce_log_z(neg, torch.tensor([4.0])), torch.log(4.0 * (1 + torch.tensor([math.e])) / 2))


def test_nce_does_not_reward_a_collapsed_encoder():
    """With Ẑ re-estimated per step, R = R_adv = every negative (a constant encoder) costs
    −log(1/(1+m)) − m·log(m/(1+m)) per side, well above a separated configuration."""
    d, mneg = 4, 8
    r = F.normalize(torch.ones(1, d), dim=-1)
    m = _method_with_banks("nce", r.repeat(mneg, 1), r.repeat(mneg, 1))
    collapsed = float(m.contrastive_loss(r, r, torch.tensor([0]), torch.arange(1, mneg + 1).view(1, -1))[0])
    expect = 2 * (math.log1p(mneg) - mneg * math.log(mneg / (1 + mneg)))
    assert collapsed == pytest.approx(expect, rel=1e-5)
    m = _method_with_banks("nce", -r.repeat(mneg, 1), -r.repeat(mneg, 1))
    assert float(m.contrastive_loss(r, r, torch.tensor([0]), torch.arange(1, mneg + 1).view(1, -1))[0]) < collapsed / 2


# -- warm start and the FreeLB integration ----------------------------------------------------


def _grads(model):
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def test_before_carl_start_the_step_equals_freelb():
    outs = []
    for cls, cfg in ((FreeLB, FreeLBConfig()), (CARL, CARLConfig(carl_start=3))):
        model = make_tiny_rnn("lstm", seed=1).train()
        torch.manual_seed(5)
        method = cls(cfg)
        method.setup(model, TRAIN)
        out = method.train_step(model, batch_for(model), _backward)
        outs.append((out.loss, _grads(model), out.logs))
    (l0, g0, _), (l1, g1, logs1) = outs
    assert float(l0) == float(l1)
    assert g0.keys() == g1.keys()
    for k in g0:
        assert torch.equal(g0[k], g1[k]), k
    assert "carl_loss" not in logs1


def test_carl_start_fills_the_banks_then_adds_L_D_and_updates_by_eq5():
    model = make_tiny_rnn("lstm", seed=1).train()
    torch.manual_seed(0)
    m = CARL(CARLConfig(carl_start=1, negatives=4, carl_loss="infonce"))
    m.setup(model, TRAIN)
    b = batch_for(model)
    m.train_step(model, b, _backward)
    assert not m.banks_ready  # warm start: nothing before carl_start steps
    m.on_step_end(model, 1)
    model.zero_grad()
    m.train_step(model, b, _backward)  # fills the banks (one pass), then L_D on every ascent step
    assert m.banks_ready and bool(m.bank_orig.filled.all()) and bool(m.bank_adv.filled.all())
    assert m.bank_orig.memory.shape == (len(SENTENCES), model.hidden_size)
    before = m.bank_orig.memory.clone()
    model.zero_grad()
    out = m.train_step(model, b, _backward)
    assert out.logs["carl_loss"] > 0 and 0 < out.logs["carl_pos_cos"] <= 1.0 + 1e-6
    # the row update is Eq. 5 with this step's (normalised, clean) R
    with torch.no_grad():
        model.eval()
        r = F.normalize(model(b["input_ids"], b["attention_mask"]).pooled, dim=-1)
    torch.testing.assert_close(m.bank_orig.memory, 0.5 * before + 0.5 * r, atol=1e-5, rtol=0)
    assert m.describe()["negatives_resolved"] == 4


def test_negative_sampling_is_reproducible_from_the_run_seed():
    draws = []
    for _ in range(2):
        model = make_tiny_rnn("lstm", seed=1)
        torch.manual_seed(11)
        m = CARL(CARLConfig(carl_start=0, negatives=3))
        m.setup(model, TRAIN)
        draws.append(m.sampler.sample(torch.tensor(LABELS), 3, m.neg_generator))
    assert torch.equal(*draws)


def test_extra_term_trains_theta_but_the_ascent_uses_L_C_only():
    """FreeLB's δ path must not change when a subclass adds a δ-dependent term (Eq. 1), and θ's
    gradient must be FreeLB's plus exactly Σ_t ∂(extra_t / K)/∂θ."""
    seen, extra_grads, K = {}, [], 3

    class Probe(FreeLB):
        def __init__(self, key, extra):
            super().__init__(FreeLBConfig(steps=K))
            self.key, self.extra = key, extra

        def extra_loss(self, model, batch, adv_out, step):
            seen.setdefault(self.key, []).append(adv_out.logits.detach().clone())
            if not self.extra:
                return None, {}
            term = 100 * adv_out.pooled.pow(2).sum()
            params = [p for p in model.parameters() if p.requires_grad]
            extra_grads.append(torch.autograd.grad(term / K, params, retain_graph=True, allow_unused=True))
            return term, {}

    grads = {}
    for key, extra in (("plain", False), ("extra", True)):
        model = make_tiny_rnn("lstm", seed=2)
        torch.manual_seed(0)
        p = Probe(key, extra)
        p.setup(model)
        p.train_step(model, batch_for(model), _backward)
        grads[key] = [q.grad.clone() for q in model.parameters() if q.requires_grad]
    for a, b in zip(seen["plain"], seen["extra"]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert len(extra_grads) == K
    for i, (gp, ge) in enumerate(zip(grads["plain"], grads["extra"])):
        expected = gp + sum(g[i] if g[i] is not None else torch.zeros_like(gp) for g in extra_grads)
        torch.testing.assert_close(ge, expected, rtol=1e-4, atol=1e-5)
    assert any(not torch.allclose(gp, ge) for gp, ge in zip(grads["plain"], grads["extra"]))


def test_nce_with_per_anchor_z_is_a_fixed_denominator_contrastive_loss():
    """The docstring's claim: with Ẑ = |pool|·mean_j e^{s_j}, P_n, m and |pool| cancel."""
    torch.manual_seed(0)
    pos, neg = torch.randn(5), torch.randn(5, 7)
    for pool in (10.0, 1000.0):
        pool_size = torch.full((5,), pool)
        got = nce_loss(pos, neg, nce_log_z(neg, pool_size), pool_size)
        S = neg.exp().sum(1)
        expected = (-torch.log(pos.exp() / (pos.exp() + S)) + torch.log1p(neg.exp() / S.unsqueeze(1)).sum(1)).mean()
        torch.testing.assert_close(got, expected)


def test_registered_with_flags_and_validation():
    assert {"carl", "rar", "carl+rar"} <= set(METHODS)
    from advviz.cli import build_parser
    from advviz.commands import flags

    argv = ["train", "--method", "carl+rar", "--tau", "0.1", "--bank-momentum", "0.9", "--negatives", "64",
            "--carl-start", "10", "--carl-loss", "infonce", "--rar-weight", "0.2"]
    args = build_parser(argv).parse_args(argv)
    m = build_method(args.method, flags.method_values(args, [args.method]))
    assert (m.config.tau, m.config.bank_momentum, m.config.negatives, m.config.carl_start, m.config.carl_loss,
            m.config.rar_weight) == (0.1, 0.9, 64, "10", "infonce", 0.2)
    for bad in ({"tau": 0}, {"bank_momentum": 1.0}, {"negatives": -1}, {"carl_loss": "x"}, {"carl_start": "-1"},
                {"carl_start": "100%"}, {"carl_start": "soon"}, {"carl_start": "-2ep"}):
        with pytest.raises(AdvvizError):
            build_method("carl", bad)
    assert not METHODS["carl"].is_attack  # a training method; as an attack it would be FreeLB


def test_carl_needs_the_training_set(tiny_lstm):
    with pytest.raises(AdvvizError, match="training set"):
        CARL().setup(tiny_lstm, None)


@pytest.mark.slow
def test_carl_trains_on_real_data(data_dir, tmp_path):
    import json

    from advviz.train import TrainConfig, Trainer

    cfg = TrainConfig(dataset="sst2-sent", arch="lstm", method="carl", epochs=1, max_train=160, max_eval=64,
                      batch_size=32, log_every=1, eval_every=1, data_dir=str(data_dir), out=str(tmp_path / "c"))
    method = build_method("carl", {"carl_start": 2, "negatives": 32})
    res = Trainer(cfg, method, progress=False).fit()
    logged = [line for line in res.log if "carl_loss" in line]
    assert [line["step"] for line in logged] == [3, 4, 5]  # L_D only after 2 completed steps
    assert all(math.isfinite(line["carl_loss"]) for line in logged)
    metrics = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert "extra_parameters" not in metrics  # CARL adds no parameters (Table 7)
    # the warm-start models (steps 1, 2: FreeLB) are evaluated and logged but never kept as CARL
    evals = {line["step"]: line for line in res.log if "dev_accuracy" in line}
    assert sorted(evals) == [1, 2, 3, 4, 5]
    assert [evals[s].get("eligible", True) for s in sorted(evals)] == [False, False, True, True, True]
    assert metrics["steps"] > 2
    assert metrics["dev_accuracy"] == max(evals[s]["dev_accuracy"] for s in (3, 4, 5))


def test_only_models_trained_with_L_D_are_eligible_as_best_checkpoint():
    m = CARL(CARLConfig(carl_start=4))
    assert [m.checkpoint_eligible(s) for s in (1, 4, 5)] == [False, False, True]
    assert FreeLB().checkpoint_eligible(1)


def test_bank_positive_penalises_the_global_drift_that_live_positives_reward():
    """All representations move to a new direction u while the banks still hold the old ones:
    with live positives (R = R_adv) L_D drops; with bank positives it rises (the collapse mode)."""
    g = torch.Generator().manual_seed(1)
    d, mneg, B = 16, 32, 4
    old = F.normalize(torch.randn(1, d, generator=g) * 0.2 + torch.ones(1, d), dim=-1)
    rows = F.normalize(old + 0.3 * torch.randn(B + mneg, d, generator=g), dim=-1)  # concentrated reps
    labels = [0] * B + [1] * mneg
    ids, neg_ids = torch.arange(B), torch.arange(B, B + mneg).repeat(B, 1)
    u = F.normalize(torch.randn(1, d, generator=g) - 3 * old, dim=-1).repeat(B, 1)  # drifted, collapsed
    for positive, sign in (("live", -1), ("bank", +1)):
        m = CARL(CARLConfig(carl_positive=positive, negatives=mneg))
        m.sampler = NegativeSampler(labels)
        m.bank_orig, m.bank_adv = MemoryBank(B + mneg, d), MemoryBank(B + mneg, d)
        m.bank_orig.fill(torch.arange(B + mneg), rows)
        m.bank_adv.fill(torch.arange(B + mneg), rows)
        y = torch.zeros(B, dtype=torch.long)
        before = float(m.contrastive_loss(rows[:B], rows[:B], y, neg_ids, ids)[0])
        after = float(m.contrastive_loss(u, u, y, neg_ids, ids)[0])
        assert sign * (after - before) > 0, (positive, before, after)


def test_state_dict_round_trip_keeps_banks_counter_and_generators():
    model = make_tiny_rnn("lstm", seed=1).train()
    torch.manual_seed(0)
    m = CARL(CARLConfig(carl_start=0, negatives=3))
    m.setup(model, TRAIN)
    m.train_step(model, batch_for(model), _backward)
    m.on_step_end(model, 1)
    state = m.state_dict()
    m2 = CARL(CARLConfig(carl_start=0, negatives=3))
    m2.setup(model, TRAIN)
    m2.load_state_dict(state)
    assert m2.completed_steps == 1 and m2.banks_ready
    assert torch.equal(m2.bank_orig.memory, m.bank_orig.memory) and torch.equal(m2.bank_adv.memory, m.bank_adv.memory)
    y = torch.tensor(LABELS)
    assert torch.equal(m.sampler.sample(y, 3, m.neg_generator), m2.sampler.sample(y, 3, m2.neg_generator))


def test_one_clean_pass_per_step_gives_the_gradients_of_one_per_ascent_step():
    """Issue 15: R = f(E) is computed once per optimiser step; with dropout off, θ's gradient is
    exactly that of recomputing R (with its graph) on every ascent step, as CARL did before."""

    class PerStepCARL(CARL):  # the previous implementation, as the reference
        def extra_loss(self, model, batch, adv_out, step):
            if not self.active:
                return None, {}
            ids, att, y = batch["input_ids"], batch["attention_mask"], batch["labels"]
            r = F.normalize(model(input_ids=ids, attention_mask=att).pooled.float(), dim=-1)
            r_adv = F.normalize(adv_out.pooled.float(), dim=-1)
            if self._neg_ids is None:
                self._neg_ids = self.sampler.sample(y, self.num_negatives, self.neg_generator)
            loss, logs = self.contrastive_loss(r, r_adv, y, self._neg_ids, batch["index"])
            if step == self.config.steps - 1:
                self.bank_orig.update(batch["index"], r.detach(), self.config.bank_momentum)
                self.bank_adv.update(batch["index"], r_adv.detach(), self.config.bank_momentum)
            return self.config.carl_weight * loss, logs

    grads, passes = {}, {}
    for cls in (CARL, PerStepCARL):
        model = make_tiny_rnn("lstm", seed=3).train()  # dropout 0
        m = cls(CARLConfig(carl_start=0, negatives=4, steps=3, carl_weight=0.7))
        m.setup(model, TRAIN, seed=1)
        calls = []
        hook = model.rnn.register_forward_hook(lambda *a: calls.append(1))
        b = batch_for(model)
        m.train_step(model, b, _backward)  # fills the banks, then L_D on every ascent step
        model.zero_grad()
        calls.clear()
        m.train_step(model, b, _backward)
        hook.remove()
        grads[cls.__name__] = _grads(model)
        passes[cls.__name__] = len(calls)
    assert passes == {"CARL": 3 + 1, "PerStepCARL": 3 + 3}  # K adversarial passes + 1 clean (was K)
    g, ref = grads["CARL"], grads["PerStepCARL"]
    assert g.keys() == ref.keys()
    for k in g:
        torch.testing.assert_close(g[k], ref[k], rtol=1e-5, atol=1e-6, msg=k)


def test_bank_scores_equal_the_dot_products_with_read_rows_and_their_gradients():
    """``MemoryBank.scores`` (one product with the whole bank) gives the numbers and the anchor
    gradients of ``contrastive_logits`` on gathered, normalised rows, the form Eq. 4 is written in."""
    from advviz.methods.carl import contrastive_logits
    from advviz.methods.memory_bank import MemoryBank

    g = torch.Generator().manual_seed(0)
    bank = MemoryBank(50, 8)
    bank.fill(torch.arange(50), 3 * torch.randn(50, 8, generator=g))  # rows of any norm (Eq. 5 leaves them so)
    bank.memory[7] = 0.0  # a zero row: divided by max(‖row‖, 1e-12) as F.normalize does
    anchor = F.normalize(torch.randn(4, 8, generator=g), dim=-1).requires_grad_()
    pos_ids, neg_ids = torch.tensor([1, 2, 3, 7]), torch.randint(0, 50, (4, 6), generator=g)
    pos, neg = contrastive_logits(anchor, bank.read(pos_ids), bank.read(neg_ids), 0.07)
    (pos.sum() + neg.square().sum()).backward()
    want = anchor.grad.clone()
    anchor.grad = None
    fast_pos = bank.scores(anchor, pos_ids.view(-1, 1)).squeeze(1) / 0.07
    fast_neg = bank.scores(anchor, neg_ids) / 0.07
    assert torch.allclose(fast_pos, pos, atol=1e-5) and torch.allclose(fast_neg, neg, atol=1e-5)
    (fast_pos.sum() + fast_neg.square().sum()).backward()
    assert torch.allclose(anchor.grad, want, atol=1e-4)
    bank.update(torch.tensor([0]), torch.ones(1, 8), 0.5)  # an in-place Eq. 5 update after scoring is safe
