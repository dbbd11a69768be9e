"""Data loading: named sets from the real data directory, local files, and every bad input."""

from __future__ import annotations

import gzip

import pytest

from advviz.data import derive_splits, load_dataset, load_splits, rows_to_dataset, stratified_split
from advviz.errors import AdvvizError


def test_named_sets_have_documented_sizes(data_dir):
    sizes = {name: {s: len(v) for s, v in load_splits(name, data_dir).items()}
             for name in ("sst2", "sst2-sent", "agnews", "mr", "subj")}
    assert sizes["sst2"] == {"train": 67349, "dev": 872}
    assert sizes["sst2-sent"] == {"train": 6920, "dev": 872, "test": 1821}
    assert sizes["agnews"]["test"] == 7600 and sizes["agnews"]["train"] + sizes["agnews"]["dev"] == 10001 - 0
    assert sum(sizes["mr"].values()) == 10662
    assert sum(sizes["subj"].values()) == 10000


def test_agnews_has_four_labels(data_dir):
    ds = load_dataset("agnews", "test", data_dir)
    assert ds.label_names == ["World", "Sports", "Business", "Sci/Tech"]
    assert sorted(set(ds.labels)) == [0, 1, 2, 3]


def test_derived_split_is_seeded_stratified_and_recorded(data_dir):
    a = load_splits("mr", data_dir)
    info = a["dev"].split_info
    assert info["method"] == "stratified" and info["derived_from"] == "train" and "seed" in info
    texts = set(a["train"].texts)
    assert not texts & set(a["dev"].texts[:50])  # held out, not copied
    # both classes are held out in proportion
    share = sum(a["dev"].labels) / len(a["dev"])
    assert 0.45 < share < 0.55


def test_stratified_split_counts():
    labels = [0] * 10 + [1] * 30
    keep, held = stratified_split(labels, 0.1, seed=1)
    assert len(held) == 4 and sum(labels[i] for i in held) == 3
    assert sorted(list(keep) + list(held)) == list(range(40))


def test_subset_is_seeded():
    ds = rows_to_dataset([{"t": f"x{i}", "y": i % 2} for i in range(50)], "t", "y", "n", "train", "mem")
    assert ds.subset(10, seed=3).texts == ds.subset(10, seed=3).texts
    assert ds.subset(10, seed=3).texts != ds.subset(10, seed=4).texts


def _write(path, text: str, gz=False):
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_local_csv_autodetects_columns_and_maps_string_labels(tmp_path):
    p = _write(tmp_path / "d.csv", "review,sentiment\n\"good, fun\",pos\nbad,neg\n  ,pos\n" + "ok,pos\n" * 20)
    splits = load_splits(str(p))
    train = splits["train"]
    assert train.label_mapping == {"neg": 0, "pos": 1}
    assert train.label_names == ["neg", "pos"]
    assert train.skipped_empty == 1
    assert "good, fun" in train.texts + splits["dev"].texts + splits["test"].texts


def test_local_jsonl_gz(tmp_path):
    lines = "\n".join('{"text": "t%d", "label": %d}' % (i, i % 3) for i in range(30))
    p = _write(tmp_path / "d.jsonl.gz", lines, gz=True)
    assert load_dataset(str(p), "train").num_labels == 3


def test_crlf_and_bom(tmp_path):
    p = tmp_path / "d.tsv"
    p.write_bytes(b"\xef\xbb\xbftext\tlabel\r\n" + b"".join(b"a%d\t%d\r\n" % (i, i % 2) for i in range(20)))
    ds = load_dataset(str(p), "train")
    assert all(not t.endswith("\r") for t in ds.texts) and set(ds.labels) == {0, 1}


@pytest.mark.parametrize("content,match", [
    ("a,b\n1,2\n", "no text column found.*columns found: a, b"),
    ("text,label\n", "header but no rows"),
    ("", "empty"),
])
def test_bad_files_give_one_clear_line(tmp_path, content, match):
    p = _write(tmp_path / "d.csv", content)
    with pytest.raises(AdvvizError, match=match) as e:
        load_splits(str(p))
    assert "\n" not in str(e.value)


def test_undecodable_bytes_name_file_and_line(tmp_path):
    p = tmp_path / "d.tsv"
    p.write_bytes(b"text\tlabel\nok\t1\nbad \xff\xfe\t0\n")
    with pytest.raises(AdvvizError, match=r"d\.tsv: line 3: bytes that are not UTF-8"):
        load_splits(str(p))


def test_unknown_name_lists_known_ones():
    with pytest.raises(AdvvizError, match="unknown data set 'nope'; known: sst2, sst2-sent"):
        load_splits("nope")


def test_missing_data_dir_says_how_to_set_it(tmp_path):
    with pytest.raises(AdvvizError, match="ADVVIZ_DATA_DIR"):
        load_splits("sst2", tmp_path / "missing")


def test_unknown_split(data_dir):
    with pytest.raises(AdvvizError, match="has no split 'test'; it has: train, dev"):
        load_dataset("sst2", "test", data_dir)


def test_derive_splits_noop_when_present():
    ds = rows_to_dataset([{"t": "a", "y": 0}], "t", "y", "n", "train", "mem")
    assert derive_splits({"train": ds, "dev": ds, "test": ds})["train"] is ds
