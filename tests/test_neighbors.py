"""FAISS neighbour index: hand-checked neighbours, brute-force agreement, cache, discretization."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from advviz.methods.neighbors import NeighborIndex, discretize, fingerprint, index_for, neighbor_directions, persist

# four 2-d points: 0 and 1 are almost parallel, 2 is orthogonal to them, 3 is opposite to 0
SQUARE = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)


def test_neighbors_by_hand_self_excluded():
    idx = NeighborIndex(k=2).fit(SQUARE)
    nb = idx.neighbors_of([0, 3])
    assert nb.dtype == torch.long and nb.shape == (2, 2)
    assert nb[0].tolist() == [1, 2]  # cos(0,1) ≈ 0.995 > cos(0,2) = 0 > cos(0,3) = -1
    assert nb[1].tolist() == [2, 1]  # cos(3,2) = 0 > cos(3,1) ≈ -0.995
    scores, ids = idx.query(SQUARE[:1], 3)
    assert ids[0].tolist() == [0, 1, 2]
    np.testing.assert_allclose(scores[0], [1.0, 1 / np.sqrt(1.01), 0.0], atol=1e-6)


def test_exclude_rows_never_neighbours():
    idx = NeighborIndex(k=2, exclude=[1]).fit(SQUARE)
    assert 1 not in idx.neighbors_of([0, 2, 3]).flatten().tolist()


def test_agrees_with_brute_force_cosine():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(300, 16)).astype(np.float32)
    idx = NeighborIndex(k=5).fit(m)
    table = idx.build_table()
    unit = m / np.linalg.norm(m, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    expected = np.argsort(-sims, axis=1)[:, :5]
    assert (table.numpy() == expected).mean() > 0.999  # exact search; ties are measure-zero


def test_l2_metric_nearest():
    idx = NeighborIndex(k=1, metric="l2").fit(SQUARE)
    _, ids = idx.query(np.array([[0.1, 0.9], [0.95, 0.06]], dtype=np.float32), 1)
    assert ids[:, 0].tolist() == [2, 1]


def test_bad_arguments():
    with pytest.raises(ValueError):
        NeighborIndex(k=0)
    with pytest.raises(ValueError):
        NeighborIndex(metric="dot")


def test_save_load_roundtrip_and_stale(tmp_path):
    idx = NeighborIndex(k=2).fit(SQUARE)
    idx.neighbors_of([0, 2])
    path = idx.save(tmp_path / "nb.safetensors")
    fresh = NeighborIndex(k=2).fit(SQUARE)
    assert fresh.load_table(path)
    assert torch.equal(fresh.table, idx.table) and fresh.table[1, 0] == -1  # partial table kept
    other = NeighborIndex(k=2).fit(SQUARE * 2)  # different matrix: stale cache refused
    assert fingerprint(SQUARE * 2) != fingerprint(SQUARE)
    assert not other.load_table(path)
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    assert not fresh.load_table(tmp_path / "bad.safetensors")


def test_discretize_moved_to_and_nearest():
    m = torch.tensor(SQUARE)
    cos_idx = NeighborIndex(k=3).fit(m)
    l2_idx = NeighborIndex(k=1, metric="l2").fit(m)
    # token 0 pushed towards 2: direction (−1, 1)/√2 is exactly u_{0→2}
    d = discretize(m, cos_idx, l2_idx, torch.tensor([0, 0]), torch.tensor([[-0.03, 0.03], [-0.8, 0.8]]))
    assert d.moved_to.tolist() == [2, 2]
    assert torch.allclose(d.cosine, torch.ones(2), atol=1e-6)
    assert d.nearest.tolist() == [0, 2]  # small step stays nearest to itself, a large one crosses over
    assert d.rank.tolist() == [2, 2]  # 2 is token 0's second neighbour (after 1)


def test_neighbor_directions_unit_and_duplicate_zero():
    m = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    u = neighbor_directions(m, torch.tensor([0]), torch.tensor([[1, 2]]))
    assert torch.allclose(u[0, 0], torch.tensor([0.6, 0.8]))
    assert torch.equal(u[0, 1], torch.zeros(2))


def test_index_for_memoised_and_refreshed_after_update(tiny_lstm, tmp_path):
    a = index_for(tiny_lstm, 3, cache_dir=tmp_path)
    assert index_for(tiny_lstm, 3, cache_dir=tmp_path) is a
    a.neighbors_of([2, 3])
    persist(a)
    assert (tmp_path / "neighbors-cosine-k3.safetensors").is_file()
    with torch.no_grad():
        tiny_lstm.embedding.weight.add_(0.01)  # an optimiser step bumps the version counter
    b = index_for(tiny_lstm, 3, cache_dir=tmp_path)
    assert b is not a and b.fingerprint != a.fingerprint
    assert (b.table[2] == -1).all()  # the on-disk table was for the old matrix


def test_excluded_ids(tiny_lstm, tiny_bert):
    from advviz.methods.neighbors import excluded_ids

    assert excluded_ids(tiny_lstm.tokenizer) == (0, 1)  # <pad>, <unk>
    vocab = tiny_bert.tokenizer.vocab
    ex = set(excluded_ids(tiny_bert.tokenizer))
    assert {vocab.index("[CLS]"), vocab.index("[SEP]"), vocab.index("[PAD]"), vocab.index("[unused0]")} <= ex
    assert vocab.index("good") not in ex
    nb = index_for(tiny_bert, 5).neighbors_of([vocab.index("good")])
    assert not set(nb.flatten().tolist()) & ex


@pytest.mark.parametrize("scale", [0.0, 0.05, 0.5, 2.0, 10.0])
def test_pruned_nearest_equals_brute_force(scale):
    """The triangle-inequality pruning is exact at every perturbation size (small ones never
    reach the full index, large ones fall back to it)."""
    from advviz.methods.neighbors import NeighborIndex, nearest_entries

    g = torch.Generator().manual_seed(1)
    E = torch.randn(500, 8, generator=g)
    idx = NeighborIndex(1, "l2", exclude=(0, 7)).fit(E)
    ids = torch.randint(0, 500, (300,), generator=g)
    delta = torch.randn(300, 8, generator=g) * scale
    p = E[ids] + delta
    d = torch.cdist(p, E)
    own = d[torch.arange(300), ids].clone()
    d[:, [0, 7]] = float("inf")  # excluded entries are never answers for other tokens...
    d[torch.arange(300), ids] = own  # ...but every token's own row is (an unmoved <unk> stays <unk>)
    assert torch.equal(nearest_entries(E, idx, ids, delta), d.argmin(1))


def test_a_slightly_perturbed_unk_stays_unk_in_the_nearest_reading():
    """<unk> is never a neighbour of a word, but a small δ on an <unk> token is closer to <unk>'s
    own row than to any word: the 'nearest' reading must not invent a substitution there."""
    from advviz.methods.neighbors import NeighborIndex, nearest_entries

    E = torch.tensor([[0.0, 0.0], [0.1, 0.0], [1.0, 0.0], [0.0, 1.0]])  # 0 <pad>, 1 <unk>, 2, 3 words
    idx = NeighborIndex(1, "l2", exclude=(0, 1)).fit(E)
    ids = torch.tensor([1, 1, 2])
    delta = torch.tensor([[0.05, 0.0], [0.8, 0.0], [0.0, 0.1]])
    assert nearest_entries(E, idx, ids, delta).tolist() == [1, 2, 2]
