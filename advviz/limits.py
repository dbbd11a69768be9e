"""Refuse what cannot fit before allocating it: one estimate of the memory at hand, one check."""

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
