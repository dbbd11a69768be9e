"""Hostile inputs, round 3: unbounded work (issue 24). Every file is read up to a size limit
(decompressed; the message names the limit and ``--max-data-mb``), every text up to
``limits.MAX_TEXT_CHARS`` characters, every user-given loop count up to its documented maximum
(``limits.MAXIMA``), and SIGTERM stops any phase (reading, tokenizing, training, attacking) within
seconds with one line.

The cases that hung or filled memory on the code before run in a subprocess (memory capped, with
a timeout) or under ``deadline`` (an alarm), so that a regression fails instead of hanging the
suite. Training runs are a 4-unit BiGRU on a 60-line TSV (``TINY``), as in test_hostile_cli.py."""

from __future__ import annotations

import gzip
import io
import json
import os
import resource
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from advviz.cli import main
from advviz.limits import MAX_TEXT_CHARS, MAXIMA
from test_hostile_cli import TINY, _toy_rows, one_line, train

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
ENV.pop("ADVVIZ_MAX_DATA_MB", None)


@pytest.fixture
def toy(tmp_path) -> Path:
    p = tmp_path / "toy.tsv"
    p.write_text(_toy_rows())
    return p


@pytest.fixture
def ck(toy, tmp_path) -> Path:
    assert main(train(toy, tmp_path / "ck")) == 0
    return tmp_path / "ck"


class Overdue(Exception):
    """The code under test ran past its deadline (it used to run without end)."""


@contextmanager
def deadline(seconds: int):
    def fire(signum, frame):
        raise Overdue(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _cap_memory(gb: int = 4):
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (gb << 30, gb << 30))
    return cap


def spawn(argv, tmp_path: Path, **kw) -> subprocess.Popen:
    """``python -m advviz ARGV`` with at most 4 GB of address space; stderr goes to a file (read it
    with ``err_of``) so that a test can watch it while the command runs."""
    err = open(tmp_path / f"stderr-{time.monotonic_ns()}.txt", "w+b")
    p = subprocess.Popen([sys.executable, "-m", "advviz", *map(str, argv)], stdout=subprocess.PIPE, stderr=err,
                         env={**ENV, **kw.pop("env", {})}, preexec_fn=_cap_memory(), **kw)
    p.err_file = err
    return p


def err_of(p) -> str:
    p.err_file.seek(0)
    return p.err_file.read().decode("utf-8", "replace")


def finish(p, timeout: float) -> tuple[int, str]:
    """(exit code, stderr) of ``p`` within ``timeout`` seconds; killed (and failed) after that."""
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        pytest.fail(f"still running {timeout} s later; stderr: {err_of(p)[-1500:]}")
    finally:
        if p.stdout:
            p.stdout.close()
    return p.returncode, err_of(p)


def last_line(err: str) -> str:
    """The one error line of a stopped command (progress bars before it are not lines of text)."""
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.startswith("advviz:")]
    assert len(lines) == 1, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    return lines[0]


def wait_for(cond, seconds: float) -> bool:
    end = time.time() + seconds
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def write_gz_lines(path: Path, n_lines: int, line_mb: int, unit: bytes = b"the film was good and the plot was dull ") -> Path:
    """A .gz of ``n_lines`` lines of ``line_mb`` MB each (repetitive: about 1/300 of that on disk)."""
    block = unit * ((1 << 15) // len(unit))
    with gzip.open(path, "wb", compresslevel=6) as f:
        for _ in range(n_lines):
            for _ in range((line_mb << 20) // len(block)):
                f.write(block)
            f.write(b"\n")
    return path


# ------------------------------------------------------------------------------- file sizes


def test_unlabeled_gzip_expanding_to_300_mb_is_one_line(toy, tmp_path):
    """The issue's case: a 1 MB gzip of 300 MB (ten 30 MB lines) ran for more than ten minutes at
    5.7 GB and ignored SIGTERM. The default limit (256 MB) refuses it within seconds."""
    bomb = write_gz_lines(tmp_path / "more.txt.gz", 10, 30)
    assert bomb.stat().st_size < 2 << 20
    p = spawn(train(toy, tmp_path / "out", "--method", "vat", "--unlabeled", bomb), tmp_path)
    rc, err = finish(p, 120)
    line = last_line(err)
    assert rc == 2 and "more than 256 MB of data once decompressed" in line and "--max-data-mb" in line, err
    assert not (tmp_path / "out").exists()


def test_max_data_mb_names_and_raises_the_limit(toy, tmp_path, capsys):
    texts = tmp_path / "more.txt.gz"
    texts.write_bytes(gzip.compress(b"a fine film\n" * 300_000))  # 3.4 MB once decompressed
    line = one_line(capsys, train(toy, tmp_path / "out", "--method", "vat", "--unlabeled", texts,
                                  "--max-data-mb", "1"))
    assert "more than 1 MB of data once decompressed (the limit); pass --max-data-mb N" in line
    assert not (tmp_path / "out").exists()
    assert "ADVVIZ_MAX_DATA_MB" not in os.environ  # the flag holds for its own command line only
    assert main(train(toy, tmp_path / "out", "--method", "vat", "--unlabeled", texts, "--max-data-mb", "4")) == 0
    semi = json.loads((tmp_path / "out" / "config.json").read_text())["data"]["semi_supervised"]
    assert semi["unlabeled_source"]["texts"] == 300_000


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_max_data_mb_must_be_a_positive_number(toy, tmp_path, capsys, value):
    line = one_line(capsys, train(toy, tmp_path / "out", "--max-data-mb=" + value))
    assert "--max-data-mb must be a positive number of megabytes" in line


def test_max_data_mb_environment_variable_that_is_not_a_number(toy, tmp_path, capsys, monkeypatch):
    """Read once at import before (a ValueError traceback on every command when it was not a number)."""
    monkeypatch.setenv("ADVVIZ_MAX_DATA_MB", "lots")
    line = one_line(capsys, train(toy, tmp_path / "out"))
    assert "ADVVIZ_MAX_DATA_MB='lots' is not a number of megabytes" in line


def test_plain_file_over_the_limit_is_refused_before_reading(toy, tmp_path, capsys):
    big = tmp_path / "big.txt"
    big.write_bytes(b"good film\n" * 300_000)  # 2.9 MB
    line = one_line(capsys, train(toy, tmp_path / "out", "--method", "vat", "--unlabeled", big, "--max-data-mb", "2"))
    assert f"{big}: more than 2 MB of data (the limit)" in line


# ------------------------------------------------------------------------------- inspect --input


def test_inspect_input_dev_zero_is_refused(ck, tmp_path):
    """Read until memory ran out before (here: a MemoryError traceback under the 4 GB cap)."""
    rc, err = finish(spawn(["inspect", ck, "--input", "/dev/zero"], tmp_path), 60)
    assert rc == 2 and "/dev/zero: not a regular file (give a file, or - for standard input)" in last_line(err)


def test_inspect_input_fifo_is_refused_not_waited_on(ck, tmp_path, capsys):
    fifo = tmp_path / "texts.fifo"
    os.mkfifo(fifo)
    with deadline(30):
        assert "not a regular file" in one_line(capsys, ["inspect", ck, "--input", fifo])


def test_inspect_input_stdin_is_bounded(ck, tmp_path):
    with open("/dev/zero", "rb") as zero:
        rc, err = finish(spawn(["inspect", ck, "--input", "-", "--max-data-mb", "8"], tmp_path, stdin=zero), 60)
    assert rc == 2 and "standard input: more than 8 MB of data (the limit)" in last_line(err)


def test_inspect_input_stdin_reads_texts(ck, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a good film\n\nan awful film\n")))
    assert main(["inspect", str(ck), "--input", "-", "--attack", "pgd", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["text"] for r in out] == ["a good film", "an awful film"]


# ------------------------------------------------------------------------------- text length


def _tokenizers():
    from advviz.models.transformer import minilm_path
    from advviz.tokenizers import CharTokenizer, HFTokenizer, WordTokenizer

    return [WordTokenizer.build(["good film", "bad film"]), CharTokenizer.build(["good film"]),
            HFTokenizer.from_pretrained(minilm_path(), max_length=32)]


@pytest.mark.parametrize("i", range(3), ids=["word", "char", "hf"])
def test_tokenizers_read_at_most_max_text_chars(i):
    tok = _tokenizers()[i]
    text = "good film " * (MAX_TEXT_CHARS // 4)  # 2.5 times the limit
    head = text[:MAX_TEXT_CHARS]
    assert tok.tokenize(text) == tok.tokenize(head)
    assert tok.encode(text) == tok.encode(head)
    with deadline(20):  # 30 MB of NUL bytes: one token a byte, tokenized whole at every step before
        nul = "\0" * (30 << 20)
        assert len(tok.tokenize(nul)) <= MAX_TEXT_CHARS
        ids = tok.batch([nul] * 8)["input_ids"]
    assert ids.shape[0] == 8 and ids.shape[1] <= tok.max_length


@pytest.mark.parametrize("i", range(2), ids=["word", "char"])
def test_encode_with_a_limit_is_the_prefix_of_the_whole(i):
    tok = _tokenizers()[i]
    for text in ["", "good", "a good, bad film's plot!", "x " * 1000, "\0" * 50]:
        for limit in (0, 1, 3, 400):
            assert tok.encode(text, limit) == tok.encode(text)[:limit]


def test_nul_bytes_unlabeled_text_is_cut_recorded_and_trains_quickly(toy, tmp_path):
    """The issue's second case: 30 MB of NUL bytes in 30 KB of gzip reached step 2 in 300 s."""
    nul = tmp_path / "nul.txt.gz"
    nul.write_bytes(gzip.compress(b"\0" * (30 << 20) + b"\n"))
    assert nul.stat().st_size < 200_000
    rc, err = finish(spawn(train(toy, tmp_path / "out", "--method", "vat", "--unlabeled", nul), tmp_path), 120)
    assert rc == 0, err[-2000:]
    data = json.loads((tmp_path / "out" / "config.json").read_text())["data"]
    assert data["texts_cut"] == {"max_chars": MAX_TEXT_CHARS, "unlabeled": 1}


def test_inspect_says_a_text_was_cut(ck, tmp_path, capsys):
    long = tmp_path / "long.txt"
    long.write_text("good " * MAX_TEXT_CHARS + "\n")
    assert main(["inspect", str(ck), "--input", str(long), "--attack", "pgd", "--json"]) == 0
    cap = capsys.readouterr()
    r = json.loads(cap.out)
    assert r["truncated"] and r["n_chars"] == 5 * MAX_TEXT_CHARS
    assert f"its first {MAX_TEXT_CHARS:,} characters were read" in cap.err


# ------------------------------------------------------------------------------- loop counts


def _config_classes():
    import advviz.analysis.lm  # noqa: F401  (LM configs)
    import advviz.methods  # noqa: F401  (every method's config)
    import advviz.models  # noqa: F401
    import advviz.train  # noqa: F401
    from advviz.config import Config

    out, todo = [], [Config]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        out.append(cls)
    return out


def test_every_config_holds_its_counts_to_the_documented_maximum():
    import dataclasses

    checked = set()
    for cls in _config_classes():
        for f in dataclasses.fields(cls):
            if f.name not in MAXIMA:
                continue
            top = MAXIMA[f.name][0]
            with pytest.raises(ValueError, match="is more than its maximum"):
                cls(**{f.name: top + 1})
            cls(**{f.name: top})  # the maximum itself is allowed
            checked.add((cls.__name__, f.name))
    # the counts the issue names, on the configs the command line and the app build
    for expected in [("PGDConfig", "steps"), ("UAEConfig", "steps"), ("UAEConfig", "mine_steps"),
                     ("VATConfig", "power_iterations"), ("SPGDConfig", "k"), ("CARLConfig", "negatives"),
                     ("TrainConfig", "epochs"), ("TrainConfig", "max_steps"), ("TrainConfig", "batch_size"),
                     ("LMTrainConfig", "epochs")]:
        assert expected in checked


CLI_COUNT_CASES = {
    "eval --attack pgd --steps 100000000": (["eval", "{ck}", "--attack", "pgd", "--steps", "100000000"],
                                            "--steps 100,000,000 is more than its maximum 10,000"),
    "inspect --attack spgd --k 100000": (["inspect", "{ck}", "--text", "good film", "--attack", "spgd", "--k", "100000"],
                                         "--k 100,000 is more than its maximum 1,000"),
    "inspect --attack uae --mine-steps": (["inspect", "{ck}", "--text", "good film", "--attack", "uae", "--mine-steps",
                                           "1000000"], "--mine-steps 1,000,000 is more than its maximum 1,000"),
    "train vat --power-iterations": (["train", "--dataset", "{toy}", *TINY, "--out", "{tmp}/out", "--method", "vat",
                                      "--power-iterations", "100000000"], "--power-iterations 100,000,000 is more"),
    "train --epochs": (["train", "--dataset", "{toy}", *TINY, "--out", "{tmp}/out", "--epochs", "1000000000"],
                       "--epochs 1,000,000,000 is more than its maximum 100,000"),
    "train --max-steps": (["train", "--dataset", "{toy}", *TINY, "--out", "{tmp}/out", "--max-steps", "10000000000"],
                          "--max-steps 10,000,000,000 is more than its maximum 100,000,000"),
    "train --batch-size": (["train", "--dataset", "{toy}", *TINY, "--out", "{tmp}/out", "--batch-size", "1000000000"],
                           "--batch-size 1,000,000,000 is more than its maximum 100,000"),
    "compare --n-boot": (["compare", "{ck}", "{ck}", "--n-boot", "1000000000"], "--n-boot 1,000,000,000 is more"),
    "eval --eps with 65 values": (["eval", "{ck}", "--attack", "pgd", "--eps", ",".join(["0.1"] * 65)],
                                  "--eps (number of values) 65 is more than its maximum 64"),
    "lm train --epochs": (["lm", "train", "--dataset", "{toy}", "--epochs", "1000000", "--out", "{tmp}/lm"],
                          "--epochs 1,000,000 is more than its maximum 100,000"),
}


@pytest.mark.parametrize("case", list(CLI_COUNT_CASES))
def test_counts_beyond_their_maximum_are_one_line(ck, toy, tmp_path, capsys, case):
    argv, message = CLI_COUNT_CASES[case]
    argv = [a.format(ck=ck, toy=toy, tmp=tmp_path) for a in argv]
    with deadline(60):  # eval --steps 100000000 ran without end before
        line = one_line(capsys, argv)
    assert message in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "lm").exists()


def test_unlabeled_stream_with_a_batch_beyond_the_maximum_never_starts(toy, tmp_path):
    """--batch-size 10⁹ with unlabeled text built a list of 10⁹ indices before the first step."""
    texts = tmp_path / "u.txt"
    texts.write_text("some text\nmore text\n")
    p = spawn(train(toy, tmp_path / "out", "--method", "vat", "--unlabeled", texts, "--batch-size", "1000000000"),
              tmp_path)
    rc, err = finish(p, 90)
    assert rc == 2 and "--batch-size 1,000,000,000 is more than its maximum" in last_line(err)


def test_attack_lists_are_bounded():
    from advviz.analysis.robustness import parse_epsilons
    from advviz.commands.analysis import _attack_list
    from advviz.errors import AdvvizError

    assert len(parse_epsilons(",".join(["0.1"] * 64))) == 64
    with pytest.raises(AdvvizError, match="more than its maximum 64"):
        _attack_list([",".join(["pgd"] * 65)])


def test_bootstrap_in_batches_gives_the_same_interval():
    """n_boot × n values are no longer held at once; the interval is the one a single batch gives."""
    import numpy as np
    from scipy import stats

    import advviz.analysis.stats as st

    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 2, 400), rng.integers(0, 2, 400)
    whole = stats.bootstrap((a - b.astype(float),), np.mean, n_resamples=2000, confidence_level=0.95,
                            method="percentile", rng=np.random.default_rng(0))
    old = st.BOOTSTRAP_VALUES
    try:
        st.BOOTSTRAP_VALUES = 400 * 7  # batches of 7 resamples
        got = st.bootstrap_ci(a, b, 2000, 0)
    finally:
        st.BOOTSTRAP_VALUES = old
    assert got == [float(whole.confidence_interval.low), float(whole.confidence_interval.high)]


def test_help_shows_the_maxima(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--method", "uae", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "10,000), at most 10,000 (default: 5)" in out and "passes over the training set, at most 100,000 " \
                                                                  "(default: 3)" in out
    assert "--max-data-mb MB" in out and "(default 256" in out


# ------------------------------------------------------------------------------- SIGTERM


def test_sigterm_stops_a_run_on_a_huge_text_within_seconds(toy, tmp_path):
    """Before: a step over a 30 MB text took minutes and SIGTERM waited for it. The signal is sent
    once training runs (a resume state is saved after each step)."""
    nul = tmp_path / "nul.txt.gz"
    nul.write_bytes(gzip.compress(b"\0" * (30 << 20) + b"\n"))
    out = tmp_path / "out"
    p = spawn(train(toy, out, "--method", "vat", "--unlabeled", nul, "--max-steps", "100000", "--epochs", "100000",
                    "--save-every", "1"), tmp_path)  # (the last --max-steps counts)
    assert wait_for(lambda: (tmp_path / ".out.resume").exists() or p.poll() is not None, 150), "no step in 150 s"
    assert p.poll() is None, err_of(p)[-2000:]
    p.send_signal(signal.SIGTERM)
    t0 = time.time()
    rc, err = finish(p, 30)
    assert rc == 130 and "stopped by SIGTERM" in last_line(err) and time.time() - t0 < 15
    assert not (tmp_path / ".out.lock").exists()


def test_sigterm_during_a_step_that_would_take_hours(toy, tmp_path):
    """A UAE step of 10,000 × 1,000 statistics-network steps: the first SIGTERM waited for it.
    Now the step has 5 s to end; then the run stops as a kill would, with one line."""
    out = tmp_path / "out"
    p = spawn(["train", "--dataset", toy, "--arch", "bigru", "--hidden-size", "4", "--embedding-dim", "4",
               "--max-steps", "3", "--method", "uae", "--steps", "10000", "--mine-steps", "1000", "--out", out],
              tmp_path)
    assert wait_for(lambda: "train uae" in err_of(p) or p.poll() is not None, 90), err_of(p)[-2000:]
    time.sleep(1)
    assert p.poll() is None, err_of(p)[-2000:]
    p.send_signal(signal.SIGTERM)
    t0 = time.time()
    rc, err = finish(p, 60)
    assert time.time() - t0 < 20
    line = last_line(err)
    assert rc == 130 and "did not end within 5 s; no resume state had been saved yet" in line, err[-2000:]
    assert not (tmp_path / ".out.lock").exists() and not (out / "model.safetensors").exists()


def test_sigterm_stops_an_attack_with_one_line_and_no_temporary(ck, tmp_path):
    """Before: killed by the default action (exit -15, no line); now the temporary of
    --per-example is removed on the way out and the exit is 130 with one line."""
    per = tmp_path / "per.jsonl"
    p = spawn(["eval", ck, "--attack", "pgd", "--steps", "10000", "--eps", ",".join(["0.1"] * 64),
               "--per-example", per], tmp_path)
    assert wait_for(lambda: "pgd" in err_of(p) or p.poll() is not None, 90), err_of(p)[-2000:]
    assert p.poll() is None, err_of(p)[-2000:]
    p.send_signal(signal.SIGTERM)
    rc, err = finish(p, 20)
    assert rc == 130 and last_line(err) == "advviz: error: stopped by SIGTERM", err[-2000:]
    assert sorted(x.name for x in tmp_path.iterdir() if "per" in x.name) == []


def test_sigterm_while_reading_standard_input(ck, tmp_path):
    """``inspect --input -`` waiting on a pipe that never ends stops on SIGTERM with one line."""
    p = spawn(["inspect", ck, "--input", "-"], tmp_path, stdin=subprocess.PIPE)
    try:
        p.stdin.write(b"a good film\n")
        p.stdin.flush()

        def reading() -> bool:
            try:
                return "pipe" in Path(f"/proc/{p.pid}/wchan").read_text()
            except OSError:
                return False
        wait_for(lambda: reading() or p.poll() is not None, 60)
        assert p.poll() is None, err_of(p)[-2000:]
        p.send_signal(signal.SIGTERM)
        rc, err = finish(p, 20)
    finally:
        p.stdin.close()
    assert rc == 130 and last_line(err) == "advviz: error: stopped by SIGTERM"


# ------------------------------------------------------------------------------- checkpoint files


def test_checkpoint_vocab_of_6_gb_is_refused_before_reading(ck, tmp_path):
    """A checkpoint from elsewhere with a 6 GB vocab.txt (sparse here): read whole before (a
    MemoryError traceback under the 4 GB cap); now one line naming the limit."""
    with open(ck / "vocab.txt", "r+b") as f:
        f.truncate(6 << 30)
    rc, err = finish(spawn(["eval", ck], tmp_path), 60)
    line = last_line(err)
    assert rc == 2 and "vocab.txt" in line and "more than the 268,435,456 allowed for a vocabulary file" in line, err
