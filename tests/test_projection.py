"""Projection table columns and pairing, cluster metrics by hand, fallback and cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import advviz
from advviz.storage.checkpoint import save_checkpoint
from advviz.errors import AdvvizError
from advviz.analysis.projection import Projector, cluster_metrics, project_representations, write_table
from conftest import LABELS, SENTENCES, make_tiny_rnn

TEXTS = SENTENCES * 3  # 18 points: enough for PCA, too few for UMAP with 2 x 18 > 16 only when attacked
LAB = LABELS * 3


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_checkpoint(d, make_tiny_rnn("lstm"), {"data": {"name": "toy", "label_names": ["negative", "positive"]}}, {})
    return advviz.load(d)


def test_table_columns_and_pairing(tiny_ckpt):
    df, m = project_representations(tiny_ckpt, TEXTS, LAB, attack="freelb", overrides={"epsilon": 0.5},
                                    reducer="pca")
    for col in ("x", "y", "label", "pred", "kind", "pair", "text", "adv_pred"):
        assert col in df.columns
    assert len(df) == 2 * len(TEXTS)
    assert df.kind.value_counts().to_dict() == {"orig": len(TEXTS), "adv": len(TEXTS)}
    orig, adv = df[df.kind == "orig"].set_index("pair"), df[df.kind == "adv"].set_index("pair")
    assert (orig.text == adv.text).all() and (orig.label == adv.label).all()
    assert (adv.pred == orig.adv_pred).all() and (orig.pred == adv.orig_pred).all()
    assert m["reducer"] == "pca" and m["fallback"] is None and m["n"] == len(TEXTS)
    d2 = np.hypot(orig.x - adv.x, orig.y - adv.y).mean()
    assert m["mean_distance_2d"] == pytest.approx(d2)
    assert 0 < m["mean_euclidean_full"] and -1 <= m["mean_cosine_full"] <= 1


def test_clean_only_projection(tiny_ckpt):
    df, m = project_representations(tiny_ckpt, TEXTS, LAB, reducer="pca")
    assert set(df.kind) == {"orig"} and list(df.pair) == list(range(len(TEXTS)))
    assert "mean_distance_2d" not in m


def test_cluster_metrics_by_hand():
    # two originals and their adversarial points; 2-D offsets 3-4-5 and 0
    xy = np.array([[0, 0], [10, 0], [3, 4], [10, 0]], dtype=float)
    reps = {"pooled": np.array([[1, 0], [0, 1]], dtype=np.float32),
            "adv_pooled": np.array([[0, 1], [0, 2]], dtype=np.float32),
            "logits": np.array([[1, 0], [0, 1]], dtype=np.float32),
            "adv_logits": np.array([[0, 1], [0, 1]], dtype=np.float32)}
    m = cluster_metrics(xy, reps, np.array([0, 1]))
    assert m["mean_distance_2d"] == pytest.approx(2.5)  # (5 + 0) / 2
    assert m["mean_euclidean_full"] == pytest.approx((np.sqrt(2) + 1) / 2)
    assert m["mean_cosine_full"] == pytest.approx(0.5)  # (0 + 1) / 2
    assert m["accuracy"] == 1.0 and m["adv_accuracy"] == 0.5 and m["flip_rate"] == 0.5
    assert m["silhouette_2d"] is None  # one point per label: undefined


def test_umap_falls_back_to_pca_for_few_points():
    p = Projector("umap", n_neighbors=15)
    xy = p.fit_transform(np.random.default_rng(0).normal(size=(10, 5)))
    assert xy.shape == (10, 2) and p.reducer_used_ == "pca"
    assert "UMAP needs at least 16 points" in p.message_ and "using PCA" in p.message_


def test_projector_errors():
    with pytest.raises(AdvvizError, match="unknown reducer"):
        Projector("lda")
    with pytest.raises(AdvvizError, match="at least 2 points"):
        Projector("pca").fit_transform(np.zeros((1, 3)))
    p = Projector("tsne", seed=0)
    xy = p.fit_transform(np.random.default_rng(0).normal(size=(12, 4)))
    assert xy.shape == (12, 2) and "perplexity lowered" in p.message_
    with pytest.raises(AdvvizError, match="t-SNE cannot"):
        p.transform(np.zeros((2, 4)))


def test_pca_transform_matches_fit(tiny_ckpt):
    X = np.random.default_rng(1).normal(size=(20, 6))
    p = Projector("pca", seed=0).fit(X)
    assert np.allclose(p.transform(X), p.fit_transform(X))


def test_cache_hit_and_key_changes(tiny_ckpt, tmp_path):
    calls = []
    kw = dict(attack="freelb", reducer="pca", cache_dir=tmp_path, progress=lambda f, s: calls.append((f, s)))
    df1, m1 = project_representations(tiny_ckpt, TEXTS, LAB, **kw)
    assert not m1["cached"] and len(list(tmp_path.glob("*.parquet"))) == 1
    assert calls[-1][0] == 1.0 and all(0 <= f <= 1 for f, _ in calls)
    df2, m2 = project_representations(tiny_ckpt, TEXTS, LAB, **kw)
    assert m2["cached"] and m2["cache_key"] == m1["cache_key"]
    pd.testing.assert_frame_equal(df1, df2)
    _, m3 = project_representations(tiny_ckpt, TEXTS, LAB, **{**kw, "seed": 1})
    assert m3["cache_key"] != m1["cache_key"] and not m3["cached"]
    assert not list(tmp_path.glob("*.pkl"))


def test_bad_inputs(tiny_ckpt, tmp_path):
    with pytest.raises(AdvvizError, match="labels"):
        project_representations(tiny_ckpt, TEXTS[:2], [0, 5], reducer="pca")
    with pytest.raises(AdvvizError, match="training method"):
        project_representations(tiny_ckpt, TEXTS, LAB, attack="baseline", reducer="pca")
    with pytest.raises(AdvvizError, match=".parquet or .csv"):
        write_table(pd.DataFrame({"x": [1]}), tmp_path / "t.xlsx")


def test_write_table_roundtrip(tmp_path):
    df = pd.DataFrame({"x": [1.0], "y": [2.0], "text": ["a"]})
    pd.testing.assert_frame_equal(pd.read_parquet(write_table(df, tmp_path / "t.parquet")), df)
    pd.testing.assert_frame_equal(pd.read_csv(write_table(df, tmp_path / "t.csv")), df)


@pytest.mark.slow
def test_umap_real_run(tiny_ckpt):
    df, m = project_representations(tiny_ckpt, TEXTS * 2, LAB * 2, attack="freelb", reducer="umap")
    assert m["reducer"] == "umap" and m["fallback"] is None and len(df) == 4 * len(TEXTS)
