"""Hostile and broken inputs: shared checkpoints must not run code, broken files must not crash."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from advviz.storage.checkpoint import load_checkpoint, save_checkpoint
from advviz.data import load_splits
from advviz.errors import AdvvizError
from conftest import disk_full_at_rename

RUN = {"data": {"name": "toy", "label_names": ["neg", "pos"]}, "method": {"name": "baseline"}}
# The first bytes of a pickle (protocol 4) and of a torch.save zip; never deserialised here.
PICKLE_BYTES = b"\x80\x04\x95\x1c\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94."
ZIP_BYTES = b"PK\x03\x04" + b"\x00" * 40


@pytest.fixture
def ckpt(tiny_lstm, tmp_path) -> Path:
    return save_checkpoint(tmp_path / "ck", tiny_lstm, RUN, {"dev_accuracy": 0.5})


def _snapshot(d: Path):
    return sorted((str(p.relative_to(d)), p.stat().st_size, p.stat().st_mtime_ns) for p in d.rglob("*"))


def _refused(d: Path, match: str):
    before = _snapshot(d)
    with pytest.raises(AdvvizError, match=match) as e:
        load_checkpoint(d)
    assert "\n" not in str(e.value)
    assert _snapshot(d) == before  # nothing written


@pytest.mark.parametrize("name,payload", [("extra.bin", PICKLE_BYTES), ("cache/x.pt", ZIP_BYTES),
                                          ("metrics.json", PICKLE_BYTES)])
def test_pickle_payload_in_any_file_is_refused(ckpt, name, payload):
    (ckpt / name).parent.mkdir(exist_ok=True)
    (ckpt / name).write_bytes(payload)
    _refused(ckpt, "pickle or torch.save payload")


def test_weights_replaced_by_pickle_refused(ckpt):
    (ckpt / "model.safetensors").write_bytes(PICKLE_BYTES)
    _refused(ckpt, "pickle or torch.save payload")


def test_symlink_out_of_the_directory_refused(ckpt):
    (ckpt / "vocab.txt").unlink()
    os.symlink("/etc/passwd", ckpt / "vocab.txt")
    _refused(ckpt, "symbolic link")


def _edit_config(d: Path, fn):
    cfg = json.loads((d / "config.json").read_text())
    fn(cfg)
    (d / "config.json").write_text(json.dumps(cfg))


def test_unknown_family_refused(ckpt):
    _edit_config(ckpt, lambda c: c["model"].update(family="exec"))
    _refused(ckpt, "does not describe a model")


def test_wrong_shapes_refused_before_allocation(ckpt):
    _edit_config(ckpt, lambda c: c["model"].update(hidden_size=100_000))  # would be a 40 GB LSTM
    _refused(ckpt, "does not match config.json")


def test_path_traversal_in_file_names_refused(ckpt):
    _edit_config(ckpt, lambda c: c["tokenizer"].update(vocab_file="../../../etc/passwd"))
    _refused(ckpt, "names a path")


def test_unknown_tokenizer_kind_refused(ckpt):
    _edit_config(ckpt, lambda c: c["tokenizer"].update(kind="pickle"))
    _refused(ckpt, "tokenizer.kind must be one of")


def test_config_not_json_refused(ckpt):
    (ckpt / "config.json").write_bytes(b"\xff\xfe not json")
    _refused(ckpt, "not a readable JSON file")


def test_truncated_weights_refused(ckpt):
    w = ckpt / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    _refused(ckpt, "unreadable or truncated")


def test_disk_full_during_save_keeps_previous_checkpoint(tiny_lstm, tmp_path):
    d = save_checkpoint(tmp_path / "ck", tiny_lstm, RUN, {"dev_accuracy": 0.1})
    with disk_full_at_rename(), pytest.raises(AdvvizError, match="No space left on device; the previous checkpoint"):
        save_checkpoint(d, tiny_lstm, RUN, {"dev_accuracy": 0.9})
    assert json.loads((d / "metrics.json").read_text())["dev_accuracy"] == 0.1
    load_checkpoint(d)
    assert [p.name for p in tmp_path.iterdir() if p.name != "ck" and ".tmp-" in p.name] == []


def test_unwritable_models_root(tiny_lstm, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(AdvvizError, match="cannot write checkpoint under"):
        save_checkpoint(blocker / "ck", tiny_lstm, RUN, {})


# -- data files --------------------------------------------------------------------------------

def test_50mb_single_line(tmp_path):
    p = tmp_path / "big.tsv"
    with open(p, "w", encoding="utf-8") as f:
        f.write("text\tlabel\n" + "word " * 10_000_000 + "\t1\n" + "short\t0\n" * 20)
    ds = load_splits(str(p))
    lengths = sorted(len(t) for s in ds.values() for t in s.texts)
    assert lengths[-1] > 49_000_000


def test_mixed_label_types_are_refused(tmp_path):
    """Round 3 (issue 24) reverses round 1: pos/neg/1/0 trained four classes; now one line (or --label-map)."""
    p = tmp_path / "mixed.csv"
    p.write_text("text,label\n" + "".join(f"t{i},{['1', 'pos', '0', 'neg'][i % 4]}\n" for i in range(40)))
    with pytest.raises(AdvvizError, match=r"mixed\.csv: the labels mix names and numbers \('pos' at line 3, 1 at line 2\)"):
        load_splits(str(p))
    train = load_splits(str(p), label_map="pos=1,neg=0")["train"]
    assert train.label_names == ["0", "1"] and train.label_mapping is None


def test_header_only(tmp_path):
    p = tmp_path / "h.tsv"
    p.write_text("text\tlabel\n")
    with pytest.raises(AdvvizError, match="header but no rows"):
        load_splits(str(p))


def test_crlf_bom_jsonl(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + b"".join(b'{"text": "a%d", "label": %d}\r\n' % (i, i % 2) for i in range(20)))
    assert len(load_splits(str(p))["train"]) > 0


def test_non_utf8(tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes("text,label\ncafé,1\n".encode("latin-1"))
    with pytest.raises(AdvvizError, match=r"latin\.csv: line 2: bytes that are not UTF-8"):
        load_splits(str(p))


# -- round 2 (issue 12): JSON that is valid but hostile, tampered caches --------------------------

def test_deeply_nested_config_refused(ckpt, depth=100_000):
    text = (ckpt / "config.json").read_text()
    assert '"model": {' in text  # nested inside the section that drives loading
    (ckpt / "config.json").write_text(text.replace('"model": {', '"model": {"deep": ' + "[" * depth + "]" * depth + ", ", 1))
    _refused(ckpt, "nested")


@pytest.mark.parametrize("content", ["[1, 2]", '"text"', "[" * 50_000 + "]" * 50_000])
def test_metrics_that_are_not_an_object_refused(ckpt, content):
    (ckpt / "metrics.json").write_text(content)
    _refused(ckpt, "metrics.json")


def test_transformer_max_length_beyond_positions_refused(tiny_bert, tmp_path):
    d = save_checkpoint(tmp_path / "bert", tiny_bert, RUN, {})
    _edit_config(d, lambda c: c["tokenizer"].update(max_length=100_000))
    _refused(d, "max_length 100000")


def test_deeply_nested_lm_config_refused(tmp_path):
    from advviz.analysis.lm import LMConfig, LSTMLanguageModel, build_lm_tokenizer, load_lm, save_lm
    from conftest import SENTENCES

    lm = LSTMLanguageModel(build_lm_tokenizer(SENTENCES, None, 1), LMConfig(embedding_dim=4, hidden_size=4))
    d = save_lm(lm, tmp_path / "lm", {})
    (d / "metrics.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(AdvvizError, match="nested"):
        load_lm(d)


def _inspect_moves(model_dir):
    import advviz
    from advviz.methods import neighbors
    from advviz.analysis.inspection import inspect

    neighbors._CACHE.clear()
    [r] = inspect(advviz.load(model_dir), ["the movie is good and the acting is great"], "spgd")
    return [(t["token"], t["moved_to"]) for t in r["tokens"]]


@pytest.mark.parametrize("tamper", ["out of range", "excluded ids", "wrong shape", "plausible but false"])
def test_tampered_neighbour_cache_never_shows_false_moves(ckpt, tamper):
    from safetensors import safe_open
    from safetensors.torch import save_file

    truth = _inspect_moves(ckpt)  # computes and caches the table under ck/cache/
    [path] = (ckpt / "cache").glob("neighbors-*.safetensors")
    with safe_open(str(path), "pt") as f:
        meta, table = f.metadata(), f.get_tensor("table")
    done = table[:, 0] >= 0
    if tamper == "out of range":
        table[done] = 10**9
    elif tamper == "excluded ids":
        table[done] = 0  # <pad>
    elif tamper == "wrong shape":
        table = table[:, :3].contiguous()
    else:  # every computed row points at the same real words, shifted by one
        table[done] = table[done].roll(1, dims=0)
    save_file({"table": table}, str(path), metadata=meta)
    assert _inspect_moves(ckpt) == truth


def test_lm_config_describing_a_huge_lstm_refused_before_allocation(tmp_path):
    from advviz.analysis.lm import LMConfig, LSTMLanguageModel, build_lm_tokenizer, load_lm, save_lm
    from conftest import SENTENCES

    lm = LSTMLanguageModel(build_lm_tokenizer(SENTENCES, None, 1), LMConfig(embedding_dim=4, hidden_size=4))
    d = save_lm(lm, tmp_path / "lm", {})
    _edit_config(d, lambda c: c["model"].update(hidden_size=200_000))  # a 640 GB LSTM
    with pytest.raises(AdvvizError, match="does not match config.json"):
        load_lm(d)
    _edit_config(d, lambda c: c.update(tokenizer=[1]))
    with pytest.raises(AdvvizError, match="tokenizer must be an object"):
        load_lm(d)
