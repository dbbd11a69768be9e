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
