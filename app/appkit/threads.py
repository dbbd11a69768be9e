"""Slow library calls (UMAP) in a background thread of the server, with progress to poll.

One worker for the whole server: UMAP is CPU-bound and the machine is small. Results stay in
memory until the server restarts (the library also caches projections on disk).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import streamlit as st


class Jobs:
    def __init__(self):
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="advviz-bg")
        self.futures: dict[tuple, Future] = {}
        self.progress: dict[tuple, tuple[float, str]] = {}
        self.lock = threading.Lock()

    def submit(self, key: tuple, fn, *args, **kwargs) -> Future:
        """Start ``fn(*args, progress=callback, **kwargs)`` once per key; returns its future."""
        with self.lock:
            fut = self.futures.get(key)
            if fut is not None and not (fut.done() and fut.exception() is not None):
                return fut

            def report(frac: float, msg: str = "") -> None:
                self.progress[key] = (float(frac), str(msg))

            self.progress[key] = (0.0, "queued")
            fut = self.pool.submit(fn, *args, progress=report, **kwargs)
            self.futures[key] = fut
            return fut

    def get(self, key: tuple) -> Future | None:
        return self.futures.get(key)

    def status(self, key: tuple) -> tuple[float, str]:
        return self.progress.get(key, (0.0, ""))


@st.cache_resource
def jobs() -> Jobs:
    return Jobs()
