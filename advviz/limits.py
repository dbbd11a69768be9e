"""Bounds on what a user can ask for, checked before the work starts.

- memory: one estimate of the memory at hand, one check (``check_fits``);
- input: the most bytes a file may hold once decompressed (``max_data_bytes``, ``--max-data-mb``)
  and the most characters of one text that are tokenized (``MAX_TEXT_CHARS``);
- counts: the documented maximum of every loop count a user gives (``MAXIMA``), enforced by the
  config dataclasses (``config.Config``) so the command line, the app and the Python API share it;
- seeds, positive counts.
"""

from __future__ import annotations

import os

from .errors import AdvvizError


def available_memory() -> int:
    """Bytes of memory a new allocation can get now (MemAvailable on Linux; else physical memory)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: never refuse on a guess


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB"


def check_fits(nbytes: float, what: str, fix: str) -> None:
    """One line when ``nbytes`` (an estimate of what is about to be allocated) exceeds the memory
    available now; ``what`` names the allocation, ``fix`` says which flag to lower."""
    have = available_memory()
    if nbytes > have:
        raise AdvvizError(f"{what} would need about {_gb(nbytes)} of memory but {_gb(have)} is available; {fix}")


# Largest width (hidden size, embedding size, vocabulary, classes) and layer count a model may have,
# in training and in a checkpoint's config.json alike (so advviz never writes what it will not
# load). Far above any real model, they keep a hostile config's shape probe on the meta device
# clear of the int64 overflow in torch's size arithmetic and from building a million modules.
MAX_DIM = 1 << 24
MAX_LAYERS = 1024


MAX_SEED = 2**32 - 1  # numpy's legacy seeding (accelerate's set_seed) takes 0..2**32-1


def seed_problem(seed, flag: str = "--seed") -> str | None:
    """Why ``seed`` is not a usable seed (None when it is): integers 0..2**32−1 everywhere."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        return f"{flag} must be in 0..{MAX_SEED}, got {seed}"
    return None


def check_seed(seed, flag: str = "--seed") -> None:
    """One line for a seed numpy/torch would reject with a traceback."""
    problem = seed_problem(seed, flag)
    if problem:
        raise AdvvizError(problem)


def check_positive(value, flag: str) -> None:
    if value is not None and value <= 0:
        raise AdvvizError(f"{flag} must be positive, got {value}")


def check_max_examples(n, flag: str = "--max-examples") -> None:
    if n is not None and n <= 0:
        raise AdvvizError(f"{flag} must be positive, got {n} (leave it out to use every example)")


# --------------------------------------------------------------------------------------------
# input: bytes of a file, characters of a text

MAX_DATA_MB_ENV = "ADVVIZ_MAX_DATA_MB"
#: Default bound on a file's bytes once decompressed. The largest file we ship decompresses to
#: 33 MB (imdb_train.tsv.gz); reading a table costs about 5 times its size in memory (bytes, text,
#: rows, tokens), so 256 MB stays near 1.5 GB on our 2-core, shared machines. ``--max-data-mb N``
#: (every command) or ``ADVVIZ_MAX_DATA_MB`` raises it.
DEFAULT_MAX_DATA_MB = 256


def max_data_mb() -> float:
    """The bound now in force, in MB: ``--max-data-mb`` (which sets ``ADVVIZ_MAX_DATA_MB`` for
    this process and its children: the app's server, background jobs) or the default."""
    raw = os.environ.get(MAX_DATA_MB_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_MAX_DATA_MB
    try:
        mb = float(raw)
    except ValueError:
        raise AdvvizError(f"{MAX_DATA_MB_ENV}={raw!r} is not a number of megabytes") from None
    if not (mb > 0 and mb < float("inf")):
        raise AdvvizError(f"{MAX_DATA_MB_ENV} must be a positive number of megabytes, got {raw!r}")
    return mb


def max_data_bytes() -> int:
    return int(max_data_mb() * (1 << 20))


def set_max_data_mb(mb: float) -> None:
    """``--max-data-mb``: the bound for this process and the processes it starts."""
    if not (isinstance(mb, (int, float)) and 0 < mb < float("inf")):
        raise AdvvizError(f"--max-data-mb must be a positive number of megabytes, got {mb}")
    os.environ[MAX_DATA_MB_ENV] = repr(float(mb))


def too_much_data(where: str, decompressed: bool = False) -> AdvvizError:
    """The one message for a file (or stdin) beyond the bound: it names the bound and the flag."""
    mb = max_data_mb()
    shown = f"{mb:,.0f}" if mb >= 1 else f"{mb:g}"
    return AdvvizError(f"{where}: more than {shown} MB of data{' once decompressed' if decompressed else ''} "
                       f"(the limit); pass --max-data-mb N (or set {MAX_DATA_MB_ENV}) to allow more")


#: Characters of one text that are tokenized; a longer text is cut to its first MAX_TEXT_CHARS
#: characters first (every tokenizer: ``tokenizers.clip``). The longest text of the data we ship
#: has 13,704 (an IMDB review); every model reads at most --max-length tokens of a text, and a token
#: is at least one character, so the cut changes what a model reads only for texts whose first
#: max-length tokens span more than 100,000 characters. Without it one 30 MB line (a file of NUL
#: bytes) was tokenized whole at every step that drew it. Training records how many texts were cut
#: (``data.texts_cut``); ``inspect`` says so for its text.
MAX_TEXT_CHARS = 100_000


# --------------------------------------------------------------------------------------------
# counts: the documented maximum of every loop count a user gives

#: field name -> (largest value, why). Every config dataclass field of that name is checked
#: (``config.Config.__post_init__``) and its ``--help`` shows the maximum.
MAXIMA: dict[str, tuple[int, str]] = {
    "steps": (10_000, "UAE's reference runs K up to 10,000; PGD evaluations use at most 1,000"),
    "power_iterations": (100, "VAT uses 1; the power iteration has converged long before 100"),
    "mine_steps": (1_000, "UAE's reference uses 20 statistics-network steps per iteration"),
    "k": (1_000, "the papers use 10 to 15 neighbours; each token holds k × D floats per step"),
    "negatives": (100_000, "CARL's paper uses 16,000; each example holds m × d floats per step"),
    "epochs": (100_000, "passes over the training set"),
    "max_steps": (100_000_000, "optimiser steps"),
    "n_boot": (100_000, "bootstrap resamples; 10,000 already give the CI to 3 digits"),
    "list_values": (64, "values of one comma-separated list (--eps, --ppl-attacks), each a pass of an attack "
                        "over the split"),
    "batch_size": (100_000, "more examples than SST-2 has (67,349); vat and uae also draw as many unlabeled rows "
                            "per step"),
}


def maximum(name: str) -> int | None:
    """The documented maximum of the count ``name`` (a config field name), or None."""
    return MAXIMA[name][0] if name in MAXIMA else None


def count_problem(name: str, value, flag: str) -> str | None:
    """Why ``value`` exceeds the documented maximum of ``name`` (None when it does not)."""
    top = maximum(name)
    if top is None or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value > top:
        return f"{flag} {value:,} is more than its maximum {top:,} ({MAXIMA[name][1]})"
    return None


def check_count(name: str, value, flag: str) -> None:
    """One line for a count beyond its documented maximum (for flags that are not config fields)."""
    problem = count_problem(name, value, flag)
    if problem:
        raise AdvvizError(problem)
