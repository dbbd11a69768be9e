"""Hostile use of the output paths, round 3 (issue 24, "an output destroys an input"): an output
that is an input of the same command, an existing file advviz did not write, a file inside an
advviz folder, a user's file that merely looks like advviz's temporary file or lock. Every case is
one line on stderr and exit 2 (or the documented result), and nothing advviz did not write is
replaced or removed (rules: the docstrings of ``advviz.storage.outputs`` and ``.outdir``).

Models are the 4-unit BiGRU of ``test_hostile_cli`` on a 60-line TSV: milliseconds."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from advviz.cli import main
from test_hostile_cli import _toy_rows, one_line, snapshot, train

MINE = "my notes: do not lose these\n"


def cli(argv) -> int:
    return main([str(a) for a in argv])


@pytest.fixture
def toy(tmp_path) -> Path:
    p = tmp_path / "toy.tsv"
    p.write_text(_toy_rows())
    return p


@pytest.fixture
def ck(toy, tmp_path) -> Path:
    assert main(train(toy, tmp_path / "ck")) == 0
    return tmp_path / "ck"


@pytest.fixture
def rar(toy, tmp_path) -> Path:
    assert main(train(toy, tmp_path / "rar", "--method", "rar")) == 0
    return tmp_path / "rar"


def _attack(toy):
    return ["--dataset", toy, "--split", "train", "--quiet"]


def _eval(ck, toy, flag, out, *extra):
    return ["eval", ck, *_attack(toy), "--attack", "pgd", "--steps", "1", flag, out, *extra]


def _kept(before: dict[Path, bytes]) -> None:
    for p, data in before.items():
        assert p.read_bytes() == data, f"{p} changed"


# ------------------------------------------------------------------ an output that is an input


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
@pytest.mark.parametrize("case", ["eval per-example over config.json", "report over model.safetensors",
                                  "reconstruct over model.safetensors"])
def test_an_output_into_the_input_checkpoint_is_refused(ck, rar, toy, capsys, case, overwrite):
    if case.startswith("eval"):
        argv, target = _eval(ck, toy, "--per-example", ck / "config.json"), ck / "config.json"
    elif case.startswith("report"):
        argv = ["report", ck, *_attack(toy), "--attack", "fgsm", "--eps", "0.1", "--out", ck / "model.safetensors"]
        target = ck / "model.safetensors"
    else:
        argv = ["reconstruct", rar, *_attack(toy), "--out", rar / "model.safetensors"]
        target = rar / "model.safetensors"
    before = snapshot(target.parent)
    line = one_line(capsys, argv + overwrite)
    assert "an input of this command" in line and str(target.parent) in line
    assert snapshot(target.parent) == before
    assert cli(["eval", target.parent, "--dataset", toy, "--split", "train"]) == 0  # still loads


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
@pytest.mark.parametrize("alias", ["same path", "hard link", "through a symlinked folder", "data set by default"])
def test_per_example_over_the_data_file_being_evaluated_is_refused(ck, toy, tmp_path, capsys, alias, overwrite):
    out, dataset = toy, toy
    if alias == "hard link":
        out = tmp_path / "hard.tsv"
        os.link(toy, out)
    elif alias == "through a symlinked folder":
        (tmp_path / "alias").symlink_to(tmp_path)
        out = tmp_path / "alias" / "toy.tsv"
    elif alias == "data set by default":
        dataset = None  # the checkpoint's config names toy.tsv
    argv = ["eval", ck, *(["--dataset", dataset] if dataset else []), "--split", "train", "--quiet",
            "--attack", "fgsm", "--per-example", out, *overwrite]
    before = toy.read_bytes()
    line = one_line(capsys, argv)
    assert ("is the data file" in line and "an input" in line) or (not overwrite and "did not write it" in line)
    assert toy.read_bytes() == before


def test_per_example_over_a_named_data_set_file_is_refused(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    with gzip.open(data / "mr.tsv.gz", "wt") as f:
        f.write(_toy_rows().replace("\t0\n", "\tnegative\n").replace("\t1\n", "\tpositive\n"))
    assert main(train("mr", tmp_path / "m", "--data-dir", data)) == 0
    before = (data / "mr.tsv.gz").read_bytes()
    line = one_line(capsys, ["eval", tmp_path / "m", "--data-dir", data, "--attack", "fgsm", "--quiet",
                             "--per-example", data / "mr.tsv.gz", "--overwrite"])
    assert "is the data file" in line
    assert (data / "mr.tsv.gz").read_bytes() == before


def test_other_inputs_judge_second_checkpoint_projection_cache(ck, rar, toy, tmp_path, capsys):
    judged = snapshot(ck)
    assert "an input" in one_line(capsys, ["reconstruct", rar, *_attack(toy), "--judge", ck, "--out",
                                           ck / "metrics.json", "--overwrite"])
    assert "an input" in one_line(capsys, ["words", rar, ck, *_attack(toy), "--attack", "fgsm", "--out",
                                           ck / "cache" / "w.csv", "--overwrite"])
    assert snapshot(ck) == judged
    cache = tmp_path / "pcache"
    cache.mkdir()
    assert "the projection cache" in one_line(capsys, ["project", ck, *_attack(toy), "--reducer", "pca",
                                                       "--cache-dir", cache, "--out", cache / "p.csv"])
    assert list(cache.iterdir()) == []


def test_train_out_holding_its_unlabeled_file_is_refused(ck, toy, capsys):
    """The checkpoint's own vocab.txt read as --unlabeled text would be swapped away by the run."""
    before = snapshot(ck)
    line = one_line(capsys, train(toy, ck, "--overwrite", "--method", "vat", "--unlabeled", ck / "vocab.txt"))
    assert "--unlabeled file" in line and "an input of this run" in line
    assert snapshot(ck) == before


# ------------------------------------------------------------------ a file advviz did not write


def _out_cases(ck, rar, toy, tmp_path):
    f = {k: tmp_path / k for k in ("p.jsonl", "a.tsv", "r.md", "w.csv", "rc.csv", "pr.csv")}
    return {
        "eval --per-example": (_eval(ck, toy, "--per-example", f["p.jsonl"]), f["p.jsonl"]),
        "augment --out": (["augment", ck, *_attack(toy), "--attack", "fgsm", "--out", f["a.tsv"]], f["a.tsv"]),
        "report --out": (["report", ck, *_attack(toy), "--attack", "fgsm", "--eps", "0.1", "--out", f["r.md"]],
                         f["r.md"]),
        "words --out": (["words", ck, *_attack(toy), "--attack", "fgsm", "--out", f["w.csv"]], f["w.csv"]),
        "reconstruct --out": (["reconstruct", rar, *_attack(toy), "--out", f["rc.csv"]], f["rc.csv"]),
        "project --out": (["project", ck, *_attack(toy), "--reducer", "pca", "--no-cache", "--out", f["pr.csv"]],
                          f["pr.csv"]),
    }


@pytest.mark.parametrize("case", ["eval --per-example", "augment --out", "report --out", "words --out",
                                  "reconstruct --out", "project --out"])
def test_an_existing_file_advviz_did_not_write_needs_overwrite(ck, rar, toy, tmp_path, capsys, case):
    argv, out = _out_cases(ck, rar, toy, tmp_path)[case]
    out.write_text(MINE)
    line = one_line(capsys, argv)
    assert "exists and advviz did not write it" in line and "--overwrite" in line
    assert out.read_text() == MINE
    assert cli(argv + ["--overwrite"]) == 0  # the user said so: replaced
    assert out.read_text() != MINE
    assert cli(argv) == 0  # advviz's own, unchanged since: replaced without the flag
    with open(out, "a") as f:
        f.write("my edit\n")  # edited afterwards: the user's again
    capsys.readouterr()
    assert "did not write it" in one_line(capsys, argv)
    assert out.read_text().endswith("my edit\n")


def test_adversarial_csv_over_a_users_file_is_refused_before_textattack_runs(ck, toy, tmp_path, capsys):
    out = tmp_path / "adv.csv"
    out.write_text(MINE)
    line = one_line(capsys, ["eval", ck, *_attack(toy), "--attack", "textattack:deepwordbug", "--adversarial-csv", out])
    assert "--adversarial-csv" in line and "did not write it" in line
    assert out.read_text() == MINE


def test_two_outputs_of_one_command_are_never_the_same_file(ck, toy, tmp_path, capsys):
    out = tmp_path / "x.csv"
    line = one_line(capsys, ["eval", ck, *_attack(toy), "--attack", "textattack:deepwordbug", "--per-example", out,
                             "--adversarial-csv", tmp_path / "." / "x.csv"])
    assert "is also --per-example" in line and not out.exists()


def test_per_example_without_an_attack_is_refused(ck, toy, tmp_path, capsys):
    line = one_line(capsys, ["eval", ck, *_attack(toy), "--per-example", tmp_path / "p.jsonl"])
    assert "--per-example needs --attack" in line and not (tmp_path / "p.jsonl").exists()


def test_an_output_inside_another_advviz_checkpoint_is_refused(ck, rar, toy, capsys):
    """rar is no input of this command, but a checkpoint holds only advviz's files: a report there
    would make it a folder advviz can no longer replace (and --overwrite over its weights would lose them)."""
    before = snapshot(rar)
    for out in (rar / "notes.jsonl", rar / "config.json", rar / "cache" / "x.jsonl"):
        line = one_line(capsys, _eval(ck, toy, "--per-example", out, "--overwrite"))
        assert "lies inside the advviz checkpoint" in line
    assert snapshot(rar) == before


def test_the_record_of_advvizs_outputs_is_no_output_and_a_foreign_one_is_left_alone(ck, toy, tmp_path, capsys):
    from advviz.storage.outputs import RECORD_NAME

    assert RECORD_NAME in one_line(capsys, _eval(ck, toy, "--per-example", tmp_path / RECORD_NAME, "--overwrite"))
    assert not (tmp_path / RECORD_NAME).exists()
    (tmp_path / RECORD_NAME).write_text('{"files": {"p.jsonl": {"size": 1, "sha256": "x"}}}')  # not advviz's
    assert cli(_eval(ck, toy, "--per-example", tmp_path / "p.jsonl")) == 0
    assert json.loads((tmp_path / RECORD_NAME).read_text()) == {"files": {"p.jsonl": {"size": 1, "sha256": "x"}}}
    capsys.readouterr()  # nothing recorded: the file advviz just wrote now needs --overwrite
    assert "did not write it" in one_line(capsys, _eval(ck, toy, "--per-example", tmp_path / "p.jsonl"))


def test_a_record_entry_that_does_not_match_the_bytes_proves_nothing(tmp_path):
    from advviz.errors import AdvvizError
    from advviz.storage.outputs import RECORD_NAME, check_output_file, write_output

    out = tmp_path / "t.csv"
    write_output(out, lambda tmp: tmp.write_text("a,b\n1,2\n"))
    rec = json.loads((tmp_path / RECORD_NAME).read_text())
    out.write_text("a,b\n3,4\n")  # same size, other bytes
    assert rec["files"]["t.csv"]["size"] == out.stat().st_size
    with pytest.raises(AdvvizError, match="did not write it"):
        check_output_file(out)


def test_a_file_that_appears_while_the_output_is_written_is_kept(tmp_path):
    from advviz.errors import AdvvizError
    from advviz.storage.outputs import write_output

    out = tmp_path / "t.csv"

    def write(tmp):
        tmp.write_text("advviz's rows\n")
        out.write_text(MINE)  # the user saves a file of that name meanwhile

    with pytest.raises(AdvvizError, match="did not write it"):
        write_output(out, write)
    assert out.read_text() == MINE and sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


# ------------------------------------------------------------------ temporary files and locks


@pytest.mark.parametrize("name", [".config.json.tmp-abc", ".config.json.tmp-1234abcd",
                                  ".metrics.json.tmp-0123456789abcdef-0123abcd", "cache/.words-x.safetensors.tmp-99"])
def test_a_users_file_named_like_a_temporary_file_survives_train_overwrite(ck, toy, capsys, name):
    mine = ck / name
    mine.parent.mkdir(exist_ok=True)
    mine.write_text(MINE)
    before = snapshot(ck)
    line = one_line(capsys, train(toy, ck, "--overwrite"))
    assert "holds files advviz did not write" in line and Path(name).name in line
    assert snapshot(ck) == before


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_killed_runs_temporary_file_is_recognised_by_the_token_in_its_lock(ck, toy, capsys):
    """*guard*: a run killed mid-write leaves its lock (pid, token, temp_token) and a temporary file
    named with that temp token; the next run takes the lock over and replaces the checkpoint."""
    token = "fedcba9876543210"  # not a token of any other test (this process remembers it once taken over)
    lock = ck.parent / f".{ck.name}.lock"
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "started": time.time() - 60,
                                "proc_start": None, "token": "t", "temp_token": token}))
    (ck / f".metrics.json.tmp-{token}-0123abcd").write_text("{")
    assert main(train(toy, ck, "--overwrite")) == 0
    assert not lock.exists() and not list(ck.glob(".*tmp-*"))


@pytest.mark.parametrize("content", ["", "{}", '{"pid": 1}'])
def test_an_old_empty_or_foreign_lock_like_file_is_never_removed(toy, tmp_path, capsys, content):
    out = tmp_path / "run"
    lock = tmp_path / ".run.lock"
    lock.write_text(content)
    os.utime(lock, (time.time() - 3600,) * 2)
    line = one_line(capsys, train(toy, out))
    assert str(lock) in line and "delete it if no advviz run" in line
    assert lock.read_text() == content and not out.exists()


def test_a_lock_is_never_seen_empty(tmp_path, monkeypatch):
    """Whenever advviz writes the lock's bytes, a reader looking at the lock's name sees either no
    lock or a whole one (the old O_EXCL create + write showed an empty file in between)."""
    from advviz.storage.outdir import OutputLock

    lock = OutputLock(tmp_path / "run")
    seen = []
    real_write = os.write

    def write(fd, data):
        seen.append(lock.path.read_bytes() if lock.path.exists() else None)
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    lock.acquire()
    monkeypatch.setattr(os, "write", real_write)
    try:
        assert seen and all(s is None or (s and json.loads(s)["pid"] == os.getpid()) for s in seen), seen
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
        assert sorted(p.name for p in tmp_path.iterdir()) == [".run.lock"]  # no temporary left
    finally:
        lock.release()
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ more cases of the same kind


def test_a_hard_link_to_an_input_checkpoints_file_elsewhere_is_refused(ck, toy, tmp_path, capsys):
    os.link(ck / "model.safetensors", tmp_path / "weights-backup")
    line = one_line(capsys, _eval(ck, toy, "--per-example", tmp_path / "weights-backup", "--overwrite"))
    assert "hard link to a file of the checkpoint" in line
    assert os.path.samefile(ck / "model.safetensors", tmp_path / "weights-backup")


@pytest.mark.parametrize("command", ["train", "lm train"])
def test_a_run_inside_an_advviz_checkpoint_is_refused(ck, toy, capsys, command):
    """train --out CK/sub put a checkpoint (and its lock and resume state) inside CK, which then
    held a folder advviz did not write there (and could no longer be replaced)."""
    before = snapshot(ck)
    argv = (train(toy, ck / "sub") if command == "train" else
            ["lm", "train", "--dataset", toy, "--out", ck / "sub", "--epochs", "1", "--quiet"])
    assert "lies inside the advviz checkpoint" in one_line(capsys, argv)
    assert snapshot(ck) == before


def test_the_lock_of_a_run_is_no_output(ck, toy, tmp_path, capsys):
    lock = tmp_path / ".run.lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "token": "t"}))
    before = lock.read_bytes()
    assert "lock of an advviz run" in one_line(capsys, _eval(ck, toy, "--per-example", lock, "--overwrite"))
    assert lock.read_bytes() == before


def test_a_record_that_is_a_symlink_is_neither_followed_nor_replaced(ck, toy, tmp_path, capsys):
    from advviz.storage.outputs import RECORD_NAME

    target = tmp_path / "elsewhere.json"
    target.write_text(MINE)
    (tmp_path / RECORD_NAME).symlink_to(target)
    assert cli(_eval(ck, toy, "--per-example", tmp_path / "p.jsonl")) == 0
    assert (tmp_path / RECORD_NAME).is_symlink() and target.read_text() == MINE


def test_outputs_written_at_once_by_two_writers_are_all_recorded(tmp_path):
    """*guard*: updates of the record are serialised (flock on the folder), none is lost."""
    import threading

    from advviz.storage.outputs import is_advviz_output, write_output

    def writer(k):
        for i in range(8):
            write_output(tmp_path / f"{k}-{i}.csv", lambda tmp: tmp.write_text(f"{k},{i}\n"))

    threads = [threading.Thread(target=writer, args=(k,)) for k in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(is_advviz_output(tmp_path / f"{k}-{i}.csv") for k in "ab" for i in range(8))


# ------------------------------------------ a temporary name that is taken is never advviz's to remove


def _taken_first(monkeypatch, taken: Path):
    """temp_sibling answers ``taken`` (a user's file or folder) once, then fresh names."""
    from advviz.storage import outdir

    real, calls = outdir.temp_sibling, []

    def fake(path):
        calls.append(path)
        return taken if len(calls) == 1 else real(path)

    monkeypatch.setattr(outdir, "temp_sibling", fake)


def test_replace_atomically_never_writes_over_or_removes_a_taken_temporary_name(tmp_path, monkeypatch):
    from advviz.storage.outdir import replace_atomically

    mine = tmp_path / ".x.tmp-user"
    mine.write_text("my notes")
    _taken_first(monkeypatch, mine)
    replace_atomically(tmp_path / "x", lambda tmp: tmp.write_text("advviz's"))
    assert (tmp_path / "x").read_text() == "advviz's" and mine.read_text() == "my notes"
    _taken_first(monkeypatch, mine)
    with pytest.raises(RuntimeError):  # a writer that fails: its temporary goes, the taken name stays
        replace_atomically(tmp_path / "y", lambda tmp: (_ for _ in ()).throw(RuntimeError("boom")))
    assert mine.read_text() == "my notes" and sorted(p.name for p in tmp_path.iterdir()) == [".x.tmp-user", "x"]


def test_the_lock_never_removes_a_taken_temporary_name(tmp_path, monkeypatch):
    from advviz.storage.outdir import OutputLock

    mine = tmp_path / ".run.lock.tmp-user"
    mine.write_text("my notes")
    _taken_first(monkeypatch, mine)
    with OutputLock(tmp_path / "run"):
        assert (tmp_path / ".run.lock").is_file()
    assert mine.read_text() == "my notes"


def test_atomic_dir_never_removes_a_taken_temporary_folder(tmp_path, monkeypatch):
    from advviz.errors import AdvvizError
    from advviz.storage.checkpoint import atomic_dir

    mine = tmp_path / ".ck.tmp-user"
    mine.mkdir()
    (mine / "thesis.txt").write_text("my thesis")
    _taken_first(monkeypatch, mine)
    with pytest.raises(AdvvizError, match="the previous checkpoint"):
        with atomic_dir(tmp_path / "ck", "cannot write", "checkpoint"):
            pass
    assert (mine / "thesis.txt").read_text() == "my thesis"
