"""Hostile use of the command line, round 2 (issue 12): every case is one line on stderr and a
non-zero exit (or the documented result), and nothing advviz did not write is deleted or changed.

Training runs here are a 4-unit BiGRU on a 60-line TSV (no GloVe, no real data): milliseconds."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from advviz.cli import main

TINY = ["--arch", "bigru", "--hidden-size", "4", "--embedding-dim", "4", "--max-steps", "2", "--quiet"]


def _toy_rows(n: int = 60, labels=(0, 1)) -> str:
    pos, neg = "good great fine lovely superb".split(), "bad awful dull boring poor".split()
    rows = []
    for i in range(n):
        y = labels[i % len(labels)]
        w = (pos if i % 2 else neg)[i % 5]
        rows.append(f"the film was {w} and {w}\t{y}\n")
    return "text\tlabel\n" + "".join(rows)


@pytest.fixture
def toy(tmp_path) -> Path:
    p = tmp_path / "toy.tsv"
    p.write_text(_toy_rows())
    return p


def one_line(capsys, argv, code=2) -> str:
    """Run the CLI in-process; assert exit ``code`` and exactly one ``advviz: error:`` line."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == code, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("advviz: error: "), err
    assert "Traceback" not in err
    return lines[0]


def snapshot(d: Path) -> list:
    return sorted((str(p.relative_to(d)), p.is_dir(), p.read_bytes() if p.is_file() and not p.is_symlink() else None)
                  for p in d.rglob("*"))


def train(toy, out, *extra):
    return [str(a) for a in ["train", "--dataset", toy, *TINY, "--out", out, *extra]]


# ---------------------------------------------------------------------------------- data loss


def _notes(d: Path) -> Path:
    d.mkdir(parents=True)
    (d / "notes.txt").write_text("my thesis")
    (d / "sub").mkdir()
    (d / "sub" / "data.csv").write_text("a,b\n")
    return d


@pytest.mark.parametrize("flags", [[], ["--overwrite"], ["--resume"]])
def test_train_out_foreign_folder_refused(toy, tmp_path, capsys, flags):
    d = _notes(tmp_path / "notes")
    before = snapshot(tmp_path)
    line = one_line(capsys, train(toy, d, *flags))
    assert "refusing" in line or "nothing to resume" in line
    assert snapshot(tmp_path) == before


def test_train_out_group_folder_of_checkpoints_refused(toy, tmp_path, capsys):
    group = tmp_path / "group"
    assert main(train(toy, group / "a")) == 0
    before = snapshot(tmp_path)
    line = one_line(capsys, train(toy, group, "--overwrite"))
    assert "was not written by advviz" in line and "group" in line
    assert snapshot(tmp_path) == before


def test_train_out_current_directory_refused(toy, tmp_path, capsys, monkeypatch):
    work = _notes(tmp_path / "work")
    monkeypatch.chdir(work)
    before = snapshot(tmp_path)
    line = one_line(capsys, train(toy, ".", "--overwrite"))
    assert "current directory" in line
    assert snapshot(tmp_path) == before


def test_train_out_regular_file_refused(toy, tmp_path, capsys):
    f = tmp_path / "results.txt"
    f.write_text("keep me")
    line = one_line(capsys, train(toy, f, "--overwrite"))
    assert "is a file" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.txt", "toy.tsv"]
    assert f.read_text() == "keep me"


def test_train_out_symlink_refused(toy, tmp_path, capsys):
    target = _notes(tmp_path / "target")
    (tmp_path / "link").symlink_to(target)
    before = snapshot(target)
    assert "symbolic link" in one_line(capsys, train(toy, tmp_path / "link", "--overwrite"))
    assert snapshot(target) == before and (tmp_path / "link").is_symlink()


def test_checkpoint_with_a_foreign_file_is_not_replaced(toy, tmp_path, capsys):
    out = tmp_path / "ck"
    assert main(train(toy, out)) == 0
    (out / "my-notes.md").write_text("observations")
    before = snapshot(tmp_path)
    assert "my-notes.md" in one_line(capsys, train(toy, out, "--overwrite"))
    assert snapshot(tmp_path) == before


def test_empty_and_missing_out_are_used(toy, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(train(toy, tmp_path / "empty")) == 0
    assert main(train(toy, tmp_path / "new" / "deeper")) == 0
    for d in (tmp_path / "empty", tmp_path / "new" / "deeper"):
        assert (d / "model.safetensors").is_file()
    assert main(train(toy, tmp_path / "empty", "--overwrite")) == 0  # its own checkpoint: replaced


def test_save_checkpoint_refuses_foreign_directory(tiny_lstm, tmp_path):
    from advviz.storage.checkpoint import save_checkpoint
    from advviz.errors import AdvvizError

    d = _notes(tmp_path / "notes")
    before = snapshot(tmp_path)
    with pytest.raises(AdvvizError, match="advviz only replaces"):
        save_checkpoint(d, tiny_lstm, {"data": {"name": "x", "label_names": ["a", "b"]}}, {})
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("flags", [[], ["--overwrite"]])
def test_lm_train_out_foreign_folder_refused(toy, tmp_path, capsys, flags):
    d = _notes(tmp_path / "notes")
    before = snapshot(tmp_path)
    assert "refusing" in one_line(capsys, ["lm", "train", "--dataset", toy, "--out", d, "--epochs", "1",
                                           "--embedding-dim", "4", "--hidden-size", "4", "--quiet", *flags])
    assert snapshot(tmp_path) == before


def test_lm_train_replaces_its_own_lm_only_with_overwrite(toy, tmp_path, capsys):
    argv = ["lm", "train", "--dataset", toy, "--out", tmp_path / "lm", "--epochs", "1", "--embedding-dim", "4",
            "--hidden-size", "4", "--quiet"]
    assert main([str(a) for a in argv]) == 0
    capsys.readouterr()
    assert "already holds a language model" in one_line(capsys, argv)
    assert main([str(a) for a in argv + ["--overwrite"]]) == 0
    ck = tmp_path / "ck"
    assert main(train(toy, ck)) == 0
    capsys.readouterr()
    assert "holds an advviz checkpoint" in one_line(capsys, argv[:5] + [ck] + argv[6:] + ["--overwrite"])


def test_registry_delete_refuses_checkpoint_with_foreign_file(toy, tmp_path):
    from advviz import registry
    from advviz.errors import AdvvizError

    assert main(train(toy, tmp_path / "root" / "ck")) == 0
    (tmp_path / "root" / "ck" / "notes.txt").write_text("mine")
    with pytest.raises(AdvvizError, match="notes.txt"):
        registry.delete(tmp_path / "root", "ck")
    assert (tmp_path / "root" / "ck" / "notes.txt").read_text() == "mine"
    (tmp_path / "root" / "ck" / "notes.txt").unlink()
    registry.delete(tmp_path / "root", "ck")
    assert not (tmp_path / "root" / "ck").exists()


def test_background_forget_refuses_job_dir_with_foreign_file(tmp_path):
    from advviz import background
    from advviz.errors import AdvvizError

    job = tmp_path / ".jobs" / "j1"
    job.mkdir(parents=True)
    (job / "job.json").write_text(json.dumps({"id": "j1", "names": ["x"], "commands": [["train"]], "started": 0}))
    (job / "rc").write_text("0")
    (job / "thesis.tex").write_text("mine")
    with pytest.raises(AdvvizError, match="thesis.tex"):
        background.forget(tmp_path, "j1")
    assert (job / "thesis.tex").is_file()


# ---------------------------------------------------------------------------------- the lock


def _lock(out: Path) -> Path:
    return out.parent / f".{out.name}.lock"


def _write_lock(out: Path, pid: int) -> None:
    from advviz.storage.outdir import _proc_start

    _lock(out).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": time.time() - 60,
                                      "proc_start": _proc_start(pid), "token": "t"}))


def test_second_run_refused_while_first_holds_the_lock_and_sigterm_releases_it(toy, tmp_path, capsys):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    first = subprocess.Popen([sys.executable, "-m", "advviz", *train(toy, out)[:-2], "--max-steps", "100000",
                              "--epochs", "100000", "--out", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.time() + 120
        while not (out / "model.safetensors").exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()[1][-2000:]
        before = snapshot(out)
        line = one_line(capsys, train(toy, out, "--overwrite"))
        assert "in use by another advviz run" in line and f"pid {first.pid}" in line
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, err[-2000:]
    assert not _lock(out).exists()
    assert (out / "model.safetensors").is_file() and before[0][0] == snapshot(out)[0][0]


def test_lock_of_a_live_process_refuses(toy, tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(out, holder.pid)
        line = one_line(capsys, train(toy, out))
        assert f"pid {holder.pid}" in line
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()


def test_stale_lock_is_taken_over_and_released(toy, tmp_path, capsys):
    out = tmp_path / "run"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_lock(out, dead.pid)
    assert main(train(toy, out)) == 0
    assert (out / "model.safetensors").is_file() and not _lock(out).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "toy.tsv"]


def test_lock_released_when_the_run_fails(toy, tmp_path, capsys):
    out = tmp_path / "run"
    one_line(capsys, train(toy, out, "--resume"))
    assert not _lock(out).exists()


def test_lock_from_another_host_names_it(toy, tmp_path, capsys):
    out = tmp_path / "run"
    _lock(out).write_text(json.dumps({"pid": 4242, "host": "elsewhere.example", "started": time.time(), "token": "t"}))
    line = one_line(capsys, train(toy, out))
    assert "pid 4242 on host elsewhere.example" in line and str(_lock(out)) in line


# ---------------------------------------------------------------------------------- resume


def test_resume_of_a_missing_directory_refused(toy, tmp_path, capsys):
    assert "nothing to resume" in one_line(capsys, train(toy, tmp_path / "never", "--resume"))
    assert not (tmp_path / "never").exists()


@pytest.fixture
def stopped(toy, tmp_path, monkeypatch) -> Path:
    """A checkpoint with its resume state kept (as after an interruption at the last step)."""
    import advviz.storage.resume

    out = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(advviz.storage.resume, "clear_state", lambda out_dir: None)
        assert main(train(toy, out, "--save-every", "1")) == 0
    assert (tmp_path / ".run.resume" / "state.json").is_file()
    return out


def _edit_tensors(d: Path, keep):
    from safetensors.torch import load_file, save_file

    t = load_file(str(d / "tensors.safetensors"))
    save_file({k: v for k, v in t.items() if keep(k)}, str(d / "tensors.safetensors"))


def _edit_state(d: Path, fn):
    s = json.loads((d / "state.json").read_text())
    (d / "state.json").write_text(json.dumps(fn(s)))


TAMPER = {
    "model tensors missing": lambda d: _edit_tensors(d, lambda k: not k.startswith("model.")),
    "optimizer moments missing": lambda d: _edit_tensors(d, lambda k: not k.startswith("opt.")),
    "rng state missing": lambda d: _edit_tensors(d, lambda k: k != "rng.torch"),
    "tensors truncated": lambda d: (d / "tensors.safetensors").write_bytes(b"\x10\x00"),
    "tensors file missing": lambda d: (d / "tensors.safetensors").unlink(),
    "state.json missing": lambda d: (d / "state.json").unlink(),
    "state.json a list": lambda d: (d / "state.json").write_text("[]"),
    "state.json not JSON": lambda d: (d / "state.json").write_text("{counters"),
    "state.json without counters": lambda d: _edit_state(d, lambda s: {k: v for k, v in s.items() if k != "counters"}),
    "counters not numbers": lambda d: _edit_state(d, lambda s: {**s, "counters": {**s["counters"], "step": "3"}}),
    "run settings missing": lambda d: _edit_state(d, lambda s: {**s, "run": {}}),
    "state.json nested 100000 deep": lambda d: (d / "state.json").write_text("[" * 100_000 + "]" * 100_000),
}


@pytest.mark.parametrize("case", list(TAMPER))
def test_resume_refuses_what_it_cannot_restore(stopped, toy, capsys, case):
    TAMPER[case](stopped.parent / ".run.resume")
    before = snapshot(stopped)
    line = one_line(capsys, train(toy, stopped, "--save-every", "1", "--resume"))
    assert "cannot be restored completely" in line
    assert snapshot(stopped) == before


# ---------------------------------------------------------------------------------- labels

def _tsv(labels) -> str:
    return "text\tlabel\n" + "".join(f"text number {i}\t{y}\n" for i, y in enumerate(labels))


def _jsonl(objs) -> str:
    return "".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs)


ROWS = [{"text": f"t{i}", "label": i % 2} for i in range(20)]
DATA_CASES = {
    "jsonl line without a label": ("d.jsonl", _jsonl(ROWS[:5] + [{"text": "x"}] + ROWS), r"d\.jsonl: line 6: no label"),
    "jsonl label null": ("d.jsonl", _jsonl(ROWS[:3] + [{"text": "x", "label": None}] + ROWS), r"line 4: no label"),
    "jsonl label a list": ("d.jsonl", _jsonl(ROWS[:3] + [{"text": "x", "label": [1]}] + ROWS), r"line 4: .*a string or an integer"),
    "jsonl duplicated key": ("d.jsonl", _jsonl(ROWS[:2] + ['{"text": "x", "label": 0, "label": 1}'] + ROWS),
                             r"line 3: key 'label' appears twice"),
    "tsv row without the label field": ("d.tsv", _tsv([0, 1, 0]) + "no label here\n" + _tsv([1, 0] * 9)[11:],
                                        r"d\.tsv: line 5: 1 field but the header has 2"),
    "tsv row with an extra field": ("d.tsv", _tsv([0, 1]) + "a\tb\t1\n" + _tsv([1, 0] * 9)[11:], r"line 4: 3 fields"),
    "csv empty label": ("d.csv", "text,label\n" + "a,0\nb,1\n" * 9 + "c, \n", r"d\.csv: line 20: empty label"),
    "one label of 100000": ("d.tsv", _tsv([0, 1] * 10 + [100000]), r"integer labels must be 0\.\.C−1.*0, 1, 100000"),
    "every label 10**9": ("d.tsv", _tsv([10**9] * 20), r"only one class|integer labels must be"),
    "labels 1 and 5": ("d.tsv", _tsv([1, 5] * 10), r"integer labels must be 0\.\.C−1.*found 1, 5"),
    "labels 1 and 2": ("d.tsv", _tsv([1, 2] * 10), r"found 1, 2.*renumber them 0\.\.1"),
    "a single class": ("d.tsv", _tsv([0] * 20), r"only one class \(0\)"),
    "a single string class": ("d.csv", "text,label\n" + "a,pos\n" * 20, r"only one class \(pos\)"),
    "duplicated label header": ("d.tsv", "text\tlabel\tlabel\n" + "a\t0\t1\n" * 20, r"line 1: column 'label' appears twice"),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_labels_are_validated_when_read(tmp_path, case):
    from advviz.data import load_splits
    from advviz.errors import AdvvizError

    name, content, match = DATA_CASES[case]
    (tmp_path / name).write_text(content)
    with pytest.raises(AdvvizError, match=match) as e:
        load_splits(str(tmp_path / name))
    assert "\n" not in str(e.value)


def test_train_on_bad_labels_is_one_line_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "d.tsv").write_text(_tsv([1, 5] * 10))
    assert "integer labels must be" in one_line(capsys, train(tmp_path / "d.tsv", tmp_path / "out"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.tsv"]


def test_string_labels_still_mapped_and_recorded(tmp_path, toy, capsys):
    (tmp_path / "s.tsv").write_text("text\tlabel\n" + "".join(f"w{i}\t{['pos', 'neg'][i % 2]}\n" for i in range(40)))
    assert main(train(tmp_path / "s.tsv", tmp_path / "ck")) == 0
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert cfg["data"]["label_names"] == ["neg", "pos"] and cfg["data"]["label_mapping"] == {"neg": 0, "pos": 1}


@pytest.fixture
def toy_model(toy, tmp_path) -> Path:
    assert main(train(toy, tmp_path / "ck")) == 0
    return tmp_path / "ck"


@pytest.mark.parametrize("labels", [[0, 1, 2, 3] * 10, ["neg", "pos"] * 20])
@pytest.mark.parametrize("attack", [[], ["--attack", "fgsm"]])
def test_eval_on_another_label_set_refused(toy_model, tmp_path, capsys, labels, attack):
    (tmp_path / "other.tsv").write_text(_tsv(labels))
    line = one_line(capsys, ["eval", toy_model, "--dataset", tmp_path / "other.tsv", "--split", "train", *attack])
    assert "was trained on labels ['0', '1']" in line


def test_labels_matched_by_name_in_the_models_order():
    from advviz.data import TextDataset, align_labels

    ds = TextDataset("f", "dev", ["a", "b", "c"], [0, 1, 0], ["neg", "pos"])
    assert align_labels(ds, ["pos", "neg"], "m", "f").labels == [1, 0, 1]
    assert align_labels(ds, ["neg", "pos"], "m", "f") is ds


# ---------------------------------------------------------------------------------- flags


TRAIN_FLAG_CASES = {
    "--grad-clip -1 (gradient ascent)": (["--grad-clip", "-1"], "--grad-clip must be a positive number"),
    "--grad-clip nan": (["--grad-clip", "nan"], "--grad-clip must be a positive number"),
    "--weight-decay nan": (["--weight-decay", "nan"], "--weight-decay must be a finite number >= 0"),
    "--weight-decay -1": (["--weight-decay", "-1"], "--weight-decay must be a finite number >= 0"),
    "--warmup nan": (["--warmup", "nan"], "--warmup must be in [0, 1]"),
    "--seed -1": (["--seed", "-1"], r"--seed must be in 0..4294967295"),
    "--seed 99999999999": (["--seed", "99999999999"], r"--seed must be in 0..4294967295"),
    "--max-vocab 0 (was ignored)": (["--max-vocab", "0"], "--max-vocab must be at least 3"),
    "--min-freq 0": (["--min-freq", "0"], "--min-freq must be at least 1"),
    "--hidden-size 1000000": (["--hidden-size", "1000000"], "would need about"),
    "--embedding-dim 100000000": (["--embedding-dim", "100000000"], "--embedding-dim must be at most 16,777,216"),
    "--min-freq 100000 (no word left)": (["--min-freq", "100000"], "the vocabulary has no words"),
    "spgd --k 500": (["--method", "spgd", "--k", "500"], "--k 500 is larger than the vocabulary"),
    "iadvt, no word left": (["--method", "iadvt", "--min-freq", "100000"], "the vocabulary has no words"),
}


@pytest.mark.parametrize("case", list(TRAIN_FLAG_CASES))
def test_train_flags_refused_before_anything_is_written(toy, tmp_path, capsys, case):
    flags, message = TRAIN_FLAG_CASES[case]
    line = one_line(capsys, train(toy, tmp_path / "out") + flags)
    assert message in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.tsv"]


def test_mlp_hidden_zero_means_no_hidden_layer(toy, tmp_path):
    assert main(train(toy, tmp_path / "out", "--mlp-hidden", "0")) == 0
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model"]["mlp_hidden"] == 0


def test_minilm_max_length_beyond_its_positions_refused(toy, tmp_path, capsys):
    line = one_line(capsys, ["train", "--dataset", toy, "--arch", "minilm", "--max-length", "1000", "--max-steps",
                             "1", "--out", tmp_path / "out", "--quiet"])
    assert "--max-length 1000" in line and "512" in line


@pytest.mark.parametrize("argv,message", [
    (["eval", "{ck}", "--max-examples", "-3"], "--max-examples must be positive"),
    (["eval", "{ck}", "--max-examples", "0", "--json"], "--max-examples must be positive"),
    (["eval", "{ck}", "--attack", "fgsm", "--max-examples", "0"], "--max-examples must be positive"),
    (["eval", "{ck}", "--attack", "fgsm", "--attack-seed", "-1"], "--attack-seed must be in"),
    (["inspect", "{ck}", "--text", "good film", "--seed", "-5"], "--seed must be in"),
    (["inspect", "{ck}", "--text", "good film", "--attack", "spgd", "--k", "500"], "--k 500 is larger than"),
    (["compare", "{ck}", "{ck}", "--seed", "99999999999"], "--seed must be in"),
    (["reconstruct", "{ck}", "--batch-size", "0"], "--batch-size must be positive"),
    (["lm", "train", "--dataset", "{toy}", "--seed", "-1", "--out", "{tmp}/lm"], "--seed must be in"),
    (["lm", "train", "--dataset", "{toy}", "--lr", "nan", "--out", "{tmp}/lm"], "--lr must be"),
])
def test_command_flags_one_line(toy_model, toy, tmp_path, capsys, argv, message):
    argv = [a.format(ck=toy_model, toy=toy, tmp=tmp_path) for a in argv]
    assert message in one_line(capsys, argv)


def test_compare_one_example_is_valid_json_with_reasons(toy_model, toy, capsys):
    assert main(["compare", str(toy_model), str(toy_model), "--dataset", str(toy), "--split", "train",
                 "--max-examples", "1", "--json", "--n-boot", "10"]) == 0
    out = capsys.readouterr().out
    r = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in JSON output"))
    assert r["t"] is None and r["p"] is None and "2 examples" in r["t_test"]


def test_json_output_never_has_nan():
    from advviz.storage.jsonio import dumps

    assert json.loads(dumps({"a": float("nan"), "b": [float("inf"), 1.5]})) == {"a": None, "b": [None, 1.5]}


# ---------------------------------------------------------------------------------- data files


def test_gzip_bomb_is_bounded(tmp_path, monkeypatch):
    import gzip

    from advviz.data import load_splits
    from advviz.errors import AdvvizError

    monkeypatch.setenv("ADVVIZ_MAX_DATA_MB", "1")
    p = tmp_path / "bomb.tsv.gz"
    p.write_bytes(gzip.compress(b"text\tlabel\n" + b"a" * (8 << 20) + b"\t0\n"))
    assert p.stat().st_size < 100_000
    with pytest.raises(AdvvizError, match="more than 1 MB of data once decompressed"):
        load_splits(str(p))


def test_unreadable_data_file_is_one_line(toy, tmp_path, capsys, monkeypatch):
    real_open = os.open

    def denied(path, *args, **kw):  # root reads any file: deny this one where it is opened
        if str(path) == str(toy):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kw)

    monkeypatch.setattr(os, "open", denied)
    assert "Permission denied" in one_line(capsys, train(toy, tmp_path / "out"))


def test_data_path_that_is_a_directory_or_fifo(tmp_path, capsys):
    (tmp_path / "dir.tsv").mkdir()
    os.mkfifo(tmp_path / "fifo.tsv")
    for name in ("dir.tsv", "fifo.tsv"):
        line = one_line(capsys, train(tmp_path / name, tmp_path / "out"))
        assert "not a regular file" in line or "no such file" in line


# ---------------------------------------------------------------------------------- output files


@pytest.fixture
def rar_model(toy, tmp_path) -> Path:
    assert main(train(toy, tmp_path / "rar", "--method", "rar")) == 0
    return tmp_path / "rar"


def test_reconstruct_out_directory_refused_before_the_work(rar_model, toy, tmp_path, capsys):
    (tmp_path / "results").mkdir()
    line = one_line(capsys, ["reconstruct", rar_model, "--dataset", toy, "--split", "train", "--out",
                             tmp_path / "results", "--quiet"])
    assert "is a directory" in line and list((tmp_path / "results").iterdir()) == []


def test_reconstruct_judge_with_other_labels_refused(rar_model, toy, tmp_path, capsys):
    (tmp_path / "s.tsv").write_text("text\tlabel\n" + "".join(f"w{i} good\t{['pos', 'neg'][i % 2]}\n" for i in range(40)))
    assert main(train(tmp_path / "s.tsv", tmp_path / "judge")) == 0
    capsys.readouterr()
    line = one_line(capsys, ["reconstruct", rar_model, "--dataset", toy, "--split", "train", "--judge",
                             tmp_path / "judge", "--quiet"])
    assert "different label sets" in line


def test_reconstruct_writes_csv_whole(rar_model, toy, tmp_path, capsys):
    out = tmp_path / "r.csv"
    assert main([str(a) for a in ["reconstruct", rar_model, "--dataset", toy, "--split", "train", "--max-examples",
                                  "8", "--out", out, "--quiet"]]) == 0
    assert out.read_text().count("\n") >= 9 and not list(tmp_path.glob(".r.csv.tmp-*"))


@pytest.mark.parametrize("argv", [
    ["project", "{ck}", "--dataset", "{toy}", "--split", "train", "--reducer", "pca", "--out", "{out}.csv", "--no-cache"],
    ["report", "{ck}", "--dataset", "{toy}", "--split", "train", "--attack", "fgsm", "--eps", "0.1", "--out", "{out}.md"],
    ["eval", "{ck}", "--dataset", "{toy}", "--split", "train", "--attack", "fgsm", "--per-example", "{out}.jsonl"],
])
def test_output_file_that_is_a_directory_refused(toy_model, toy, tmp_path, capsys, argv):
    out = tmp_path / "o"
    name = {"project": "o.csv", "report": "o.md", "eval": "o.jsonl"}[argv[0]]
    (tmp_path / name).mkdir()
    line = one_line(capsys, [a.format(ck=toy_model, toy=toy, out=out) for a in argv])
    assert "is a directory" in line
    assert list((tmp_path / name).iterdir()) == [] and not list(tmp_path.glob(".o.*tmp-*"))


def test_a_file_that_only_looks_like_a_lock_is_never_removed(toy, tmp_path, capsys):
    out = tmp_path / "run"
    _lock(out).write_text("my notes about this run")
    os.utime(_lock(out), (time.time() - 3600,) * 2)
    assert "not an advviz lock" in one_line(capsys, train(toy, out))
    assert _lock(out).read_text() == "my notes about this run"


def test_attack_on_a_vocabulary_without_words_is_one_line(tmp_path, capsys):
    from advviz.storage.checkpoint import save_checkpoint
    from advviz.models import RNNClassifier
    from advviz.tokenizers import WordTokenizer

    m = RNNClassifier(WordTokenizer(["<pad>", "<unk>"]), 2, "gru", True, 4, 4, 4, 0.0, "bigru").eval()
    d = save_checkpoint(tmp_path / "nowords", m, {"data": {"name": "x", "label_names": ["a", "b"]}}, {})
    for attack in ("spgd", "iadvt"):
        assert "no words" in one_line(capsys, ["inspect", d, "--text", "anything at all", "--attack", attack])


def test_integer_labels_are_taken_by_position():
    from advviz.data import TextDataset, align_labels
    from advviz.errors import AdvvizError

    ds = TextDataset("f", "dev", ["a", "b"], [0, 1], ["0", "1"])
    assert align_labels(ds, ["neg", "pos"], "m", "f").labels == [0, 1]
    with pytest.raises(AdvvizError, match="was trained on labels"):
        align_labels(TextDataset("f", "dev", ["a", "b"], [0, 2], ["0", "1", "2"]), ["neg", "pos"], "m", "f")


@pytest.mark.parametrize("argv,companion", [
    (["project", "{ck}", "--dataset", "{toy}", "--split", "train", "--reducer", "pca", "--out", "{out}.csv",
      "--no-cache"], "o.metrics.json"),
    (["report", "{ck}", "--dataset", "{toy}", "--split", "train", "--attack", "fgsm", "--eps", "0.1",
      "--out", "{out}.md"], "o.json"),
])
def test_a_file_beside_the_output_that_advviz_did_not_write_is_kept(toy_model, toy, tmp_path, capsys, argv,
                                                                    companion):
    """The user names o.md / o.csv; the JSON written beside it was never named: a user's file of that
    name is refused (even with --overwrite, which covers only the named file), and a second run over
    advviz's own companion replaces it."""
    mine = tmp_path / companion
    mine.write_text('{"my": "results"}')
    cmd = [a.format(ck=toy_model, toy=toy, out=tmp_path / "o") for a in argv]
    assert "exists and advviz did not write it" in one_line(capsys, cmd)
    assert "written beside" in one_line(capsys, cmd + ["--overwrite"])
    assert mine.read_text() == '{"my": "results"}' and not (tmp_path / companion.replace("json", "md")).exists()
    mine.unlink()
    assert main(cmd + ["--quiet"]) == 0 and mine.exists()
    capsys.readouterr()
    assert main(cmd + ["--quiet"]) == 0  # its own companion from the first run is replaced


def test_report_out_must_not_name_its_json(toy_model, toy, tmp_path, capsys):
    line = one_line(capsys, ["report", toy_model, "--dataset", toy, "--split", "train", "--attack", "fgsm", "--eps",
                             "0.1", "--out", str(tmp_path / "r.json")])
    assert "markdown report" in line and not (tmp_path / "r.json").exists()
