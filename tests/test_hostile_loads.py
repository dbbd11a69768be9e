"""Hostile checkpoints, malformed configs and invalid output, round 3 (issue 24): every case is one
line on stderr and a non-zero exit — no traceback, no warning printed before it — or the documented
result (strict JSON, a working model).

Checkpoints are a 4-unit BiGRU trained once on a 60-line TSV (as in test_hostile_cli.py), copied for
each case and then edited: config.json by hand, model.safetensors with safetensors itself."""

from __future__ import annotations

import ast
import json
import os
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from advviz.cli import main
from advviz.errors import AdvvizError
from conftest import REPO
from test_hostile_cli import TINY, _toy_rows, one_line


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, its training TSV), trained once for the module; tests edit copies."""
    d = tmp_path_factory.mktemp("trained")
    (d / "toy.tsv").write_text(_toy_rows())
    assert main(["train", "--dataset", str(d / "toy.tsv"), *TINY, "--out", str(d / "ck")]) == 0
    return d / "ck", d / "toy.tsv"


@pytest.fixture
def ck(trained, tmp_path) -> Path:
    shutil.copytree(trained[0], tmp_path / "ck")
    return tmp_path / "ck"


@pytest.fixture
def toy(trained) -> Path:
    return trained[1]


def edit_config(d: Path, fn) -> Path:
    cfg = json.loads((d / "config.json").read_text())
    fn(cfg)
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def edit_weights(d: Path, fn) -> Path:
    tensors = load_file(str(d / "model.safetensors"))
    fn(tensors)
    save_file(tensors, str(d / "model.safetensors"))
    return d


def only_line(capsys, argv, code=2) -> str:
    """:func:`one_line`, and no Python warning may escape the command either (one that did would be
    printed before the error line)."""
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        line = one_line(capsys, argv, code)
    assert not escaped, [str(w.message) for w in escaped]
    return line


def commands(d: Path, toy: Path) -> dict[str, list]:
    return {"eval": ["eval", d, "--dataset", toy, "--split", "train"],
            "eval --json": ["eval", d, "--dataset", toy, "--split", "train", "--json"],
            "inspect": ["inspect", d, "--text", "good film", "--attack", "fgsm"]}


def _pop(*path):
    def fn(cfg):
        for k in path[:-1]:
            cfg = cfg[k]
        cfg.pop(path[-1])
    return fn


def _set(*path):
    *keys, value = path

    def fn(cfg):
        for k in keys[:-1]:
            cfg = cfg[k]
        cfg[keys[-1]] = value
    return fn


# ------------------------------------------------------------------------------ the issue's cases

# (edit config, edit weights, what the line says)
ISSUE_CASES = {
    "config without data": (_pop("data"), None, "config.json does not describe a model advviz can build: data is missing"),
    "hidden_size 10**9": (_set("model", "hidden_size", 10**9), None, "model.hidden_size must be an integer in 1..16,777,216"),
    "num_labels -1": (_set("model", "num_labels", -1), None, "model.num_labels must be an integer in 2..16,777,216, found -1"),
    "num_labels 0": (_set("model", "num_labels", 0), None, "model.num_labels must be an integer in 2..16,777,216, found 0"),
    "tokenizer hf on an RNN": (_set("tokenizer", "kind", "hf"), None, "tokenizer.kind must be word or char for a model of family rnn"),
    "extra tensor extra.rar": (None, lambda t: t.update({"extra.rar": torch.zeros(3)}),
                               "model.safetensors does not match config.json: config.json describes no tensor named extra.rar"),
}


@pytest.mark.parametrize("command", ["eval", "eval --json", "inspect"])
@pytest.mark.parametrize("case", list(ISSUE_CASES))
def test_hostile_checkpoint_is_one_line(ck, toy, capsys, case, command):
    cfg_edit, weights_edit, message = ISSUE_CASES[case]
    if cfg_edit:
        edit_config(ck, cfg_edit)
    if weights_edit:
        edit_weights(ck, weights_edit)
    line = only_line(capsys, commands(ck, toy)[command])
    assert message in line and str(ck) in line


# ------------------------------------------------------------------------------ more of the same kind

MORE_CASES = {
    "hidden_size a string": (_set("model", "hidden_size", "4"), None, "model.hidden_size must be an integer"),
    "hidden_size missing": (_pop("model", "hidden_size"), None, "model.hidden_size is missing"),
    "dropout 1.5": (_set("model", "dropout", 1.5), None, "model.dropout must be a number in [0, 1), found 1.5"),
    "bidirectional 'yes'": (_set("model", "bidirectional", "yes"), None, "model.bidirectional must be true or false"),
    "cell 'rnn'": (_set("model", "cell", "rnn"), None, "model.cell must be one of lstm, gru, found 'rnn'"),
    "three label names for two classes": (_set("data", "label_names", ["0", "1", "2"]), None,
                                          "data.label_names must name each of the model's 2 classes, found 3"),
    "a label name twice": (_set("data", "label_names", ["0", "0"]), None, "data.label_names names an entry twice"),
    "data.name a number": (_set("data", "name", 5), None, "data.name must be a non-empty string, found 5"),
    "data a list": (_set("data", ["x"]), None, "data must be an object, found a list of 1"),
    "format_version 2": (_set("format_version", 2), None, "written by a newer advviz"),
    "extras names an unknown head": (_set("extras", ["evil"]), None, "extras[0] must be one of rar, found 'evil'"),
    "extras names rar, no tensors": (_set("extras", ["rar"]), None, "the file lacks extra.rar.decoder.bias, extra.rar.dense.bias"),
    "method.rar_head unknown": (_set("method", "rar_head", "x"), None, "method.rar_head must be one of ln-first, mlm"),
    "tokenizer.max_length a string": (_set("tokenizer", "max_length", "400"), None, "tokenizer.max_length must be an integer"),
    "tokenizer.lowercase a string": (_set("tokenizer", "lowercase", "no"), None, "tokenizer.lowercase must be true or false"),
    "train.seed a string": (_set("train", "seed", "x"), None, "train.seed must be an integer in 0..4,294,967,295"),
    "a classifier tensor missing": (None, lambda t: t.pop("head.0.bias"), "the file lacks head.0.bias"),
    "a RAR head's tensor on a baseline checkpoint": (
        None, lambda t: t.update({"extra.rar.dense.weight": torch.zeros(2, 2)}),
        "config.json describes no tensor named extra.rar.dense.weight"),
    "float weights stored as integers": (None, lambda t: t.update({"head.0.bias": t["head.0.bias"].long()}),
                                         "floating-point weights are stored as other values: head.0.bias (I64)"),
    "float weights stored as complex numbers": (
        None, lambda t: t.update({"head.0.bias": t["head.0.bias"].to(torch.complex64)}),
        "floating-point weights are stored as other values: head.0.bias (C64)"),
}


@pytest.mark.parametrize("case", list(MORE_CASES))
def test_malformed_checkpoint_is_one_line(ck, toy, capsys, case):
    cfg_edit, weights_edit, message = MORE_CASES[case]
    if cfg_edit:
        edit_config(ck, cfg_edit)
    if weights_edit:
        edit_weights(ck, weights_edit)
    for command in ("eval", "inspect"):
        line = only_line(capsys, commands(ck, toy)[command])
        assert message in line


@pytest.mark.parametrize("key,value,message", [("dataset", 5, "train.dataset must be a non-empty string, found 5"),
                                               ("max_train", "x", "train.max_train must be an integer")])
def test_words_reads_the_training_data_of_a_validated_config(ck, toy, capsys, key, value, message):
    """`words` finds the training data again from config.json's train section (training frequency):
    values of the wrong type there were a TypeError traceback."""
    edit_config(ck, _set("train", key, value))
    line = only_line(capsys, ["words", ck, "--attack", "fgsm", "--dataset", toy, "--split", "train"])
    assert message in line


LM_CASES = {
    "hidden_size 10**9": (lambda c: c["model"].update(hidden_size=10**9), None, "model.hidden_size must be an integer"),
    "num_layers 2000": (lambda c: c["model"].update(num_layers=2000), None, "model.num_layers must be an integer in 1..1,024"),
    "dropout nan": (lambda c: c["model"].update(dropout=float("nan")), None, "model.dropout must be a number in [0, 1)"),
    "an extra tensor": (None, lambda t: t.update({"extra": torch.zeros(2)}), "config.json describes no tensor named extra"),
    "float weights stored as integers": (None, lambda t: t.update({"decoder.bias": t["decoder.bias"].long()}),
                                         "stored as other values: decoder.bias (I64)"),
}


@pytest.mark.parametrize("case", list(LM_CASES))
def test_malformed_language_model_is_one_line(tmp_path, case):
    from advviz.analysis.lm import LMConfig, LSTMLanguageModel, build_lm_tokenizer, load_lm, save_lm
    from conftest import SENTENCES

    lm = LSTMLanguageModel(build_lm_tokenizer(SENTENCES, None, 1), LMConfig(embedding_dim=4, hidden_size=4))
    d = save_lm(lm, tmp_path / "lm", {})
    cfg_edit, weights_edit, message = LM_CASES[case]
    if cfg_edit:
        edit_config(d, cfg_edit)
    if weights_edit:
        edit_weights(d, weights_edit)
    with pytest.raises(AdvvizError, match=None) as e:
        load_lm(d)
    assert message in str(e.value)


def test_tied_language_model_still_loads(tmp_path):
    """Guard: a tied LM stores its decoder weight once (the embedding) and loads re-tied."""
    from advviz.analysis.lm import LMConfig, LSTMLanguageModel, build_lm_tokenizer, load_lm, save_lm
    from conftest import SENTENCES

    lm = LSTMLanguageModel(build_lm_tokenizer(SENTENCES, None, 1), LMConfig(embedding_dim=4, hidden_size=4,
                                                                             tie_weights=True))
    back = load_lm(save_lm(lm, tmp_path / "lm", {}))
    assert back.decoder.weight is back.embedding.weight
    assert torch.equal(back.embedding.weight, lm.embedding.weight)


def test_checkpoints_of_every_kind_still_load(tmp_path, toy, tiny_bert):
    """Guard for the exact tensor set: a RAR checkpoint (extra head, decoder tied to the embedding)
    and a transformer checkpoint load, predictions unchanged."""
    import advviz
    from advviz.storage.checkpoint import save_checkpoint

    assert main(["train", "--dataset", str(toy), *TINY, "--method", "rar", "--out", str(tmp_path / "rar")]) == 0
    rar = advviz.load(tmp_path / "rar")
    assert rar.rar_head is not None and set(rar.checkpoint.extra_state) == {"rar"}
    run = {"data": {"name": "toy", "label_names": ["neg", "pos"]}}
    bert = advviz.load(save_checkpoint(tmp_path / "bert", tiny_bert, run, {}))
    texts = ["a good film", "a dull film"]
    expected = torch.softmax(tiny_bert(**tiny_bert.tokenizer.batch(texts)).logits, -1)
    assert torch.allclose(torch.from_numpy(bert.predict(texts)), expected, atol=1e-6)


def test_num_labels_zero_prints_exactly_one_line(ck):
    """In a real process (no pytest warning capture): torch's "Initializing zero-element tensors is a
    no-op" warning used to come first, then the error, three lines in all."""
    edit_config(ck, _set("model", "num_labels", 0))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "advviz", "inspect", str(ck), "--text", "good", "--attack", "fgsm"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("advviz: error: "), r.stderr


def test_warnings_of_a_command_that_succeeds_are_still_shown(ck, capsys, monkeypatch):
    """Held back while the command runs (see cli.main), not dropped."""
    import advviz.cli as cli

    def warn_then_succeed(args):
        warnings.warn("something to know", UserWarning)
        return 0

    monkeypatch.setattr(cli, "cmd_data_list", warn_then_succeed)
    shown = []
    monkeypatch.setattr(warnings, "showwarning", lambda message, *a, **k: shown.append(str(message)))
    assert main(["data", "list"]) == 0
    assert shown == ["something to know"]


@pytest.mark.parametrize("where", ["data path", "checkpoint path"])
@pytest.mark.parametrize("char,escaped", [("\n", r"\n"), ("\r", r"\r"), ("\x1b[31m", r"\x1b[31m"),
                                          ("\u2028", r"\u2028")])
def test_control_characters_in_user_paths_are_escaped(ck, toy, tmp_path, capsys, where, char, escaped):
    bad = tmp_path / f"my{char}file"
    argv = (["eval", ck, "--dataset", bad] if where == "data path" else ["eval", bad, "--dataset", toy])
    line = only_line(capsys, argv)
    assert f"my{escaped}file" in line


def test_a_checkpoint_under_a_path_with_a_newline_still_loads(ck, toy, tmp_path, capsys):
    odd = tmp_path / "two\nlines"
    shutil.copytree(ck, odd)
    assert main(["eval", str(odd), "--dataset", str(toy), "--split", "train", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 48


def test_one_line_is_also_what_library_callers_see(ck):
    import advviz

    edit_config(ck, _set("data", "name", "a\nb"))
    with pytest.raises(AdvvizError) as e:
        advviz.load(ck).evaluate()
    assert "\n" not in str(e.value) and r"a\nb" in str(e.value)


def _strict(text: str):
    """json.loads that refuses NaN / Infinity (Python's accepts them; JSON does not)."""
    def refuse(token):
        raise ValueError(f"invalid JSON token {token}")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("attack", [[], ["--attack", "fgsm"]])
def test_eval_json_on_nan_weights_is_strict_json(ck, toy, capsys, attack):
    edit_weights(ck, lambda t: [v.fill_(float("nan")) for k, v in t.items() if k.startswith("head.")])
    assert main(["eval", str(ck), "--dataset", str(toy), "--split", "train", "--json", *attack]) == 0
    res = _strict(capsys.readouterr().out)
    assert res["loss"] is None and res["n"] == 48


def test_inspect_json_on_nan_weights_is_strict_json(ck, capsys):
    edit_weights(ck, lambda t: [v.fill_(float("nan")) for v in t.values()])
    assert main(["inspect", str(ck), "--text", "good film", "--attack", "fgsm", "--json"]) == 0
    _strict(capsys.readouterr().out)


def test_every_json_document_goes_through_jsonio():
    """json.dumps writes NaN for a NaN: anything printed or written goes through
    advviz.storage.jsonio.dumps. json.dumps stays only for canonical keys (hashes, cache
    identities), which always pass sort_keys=True."""
    offenders = []
    for path in [*(REPO / "advviz").rglob("*.py"), *(REPO / "app").rglob("*.py")]:
        if path.name == "jsonio.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "dumps"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "json"
                    and not any(k.arg == "sort_keys" for k in node.keywords)):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders, offenders


# ------------------------------------------------------------------------------ advviz app --port


@pytest.fixture
def no_streamlit(monkeypatch):
    """Record what `advviz app` would start instead of starting it."""
    import advviz.commands.app as app

    started = []
    monkeypatch.setattr(app, "run_child", lambda cmd, env=None: started.append(cmd) or 0)
    return started


@pytest.mark.parametrize("holder", ["127.0.0.1", "0.0.0.0"])
def test_app_on_a_busy_port_is_one_line_before_anything_starts(tmp_path, capsys, no_streamlit, holder):
    with socket.socket() as other:
        other.bind((holder, 0))
        other.listen()
        port = other.getsockname()[1]
        line = only_line(capsys, ["app", "--port", port, "--models-dir", tmp_path, "--no-train"])
    assert f"--port {port} is in use" in line
    assert no_streamlit == []


def test_app_on_a_free_port_starts_streamlit_and_leaves_the_port_free(tmp_path, capsys, no_streamlit):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["app", "--port", str(port), "--models-dir", str(tmp_path), "--no-train"]) == 0
    [cmd] = no_streamlit
    assert cmd[cmd.index("--server.port") + 1] == str(port)
    assert f"http://127.0.0.1:{port}" in capsys.readouterr().err
    with socket.socket() as s:  # the probe socket was closed: Streamlit can take the port
        s.bind(("127.0.0.1", port))
        s.listen()


def test_app_host_that_is_not_this_machine_is_one_line(tmp_path, capsys, no_streamlit):
    line = only_line(capsys, ["app", "--host", "192.0.2.1", "--models-dir", tmp_path, "--no-train"])  # TEST-NET-1
    assert "cannot listen on 192.0.2.1 port 8501" in line and no_streamlit == []
