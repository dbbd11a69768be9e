"""What every page shares: the models root, cached models and data sets, error display."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import streamlit as st
from streamlit.errors import StreamlitAPIException

from advviz import registry
from advviz.data import NAMED_DATASETS, default_data_dir, load_dataset
from advviz.errors import AdvvizError

MAX_WORDS = 64  # longer inputs are cut: a heatmap of more tokens is unreadable
MAX_UPLOAD_BYTES = 1 << 20  # 1 MiB per uploaded file (the server-wide limit is larger)

def root() -> Path:
    return registry.models_root()


def models() -> list[dict]:
    """Registry rows of the models root (re-scanned each run: only small JSON files are read)."""
    return registry.scan(root())


def ok_names() -> list[str]:
    return [r["name"] for r in models() if r["status"] == "ok"]


@st.cache_resource(max_entries=12, show_spinner="Loading model…")
def _load(path: str, mtime: float):
    p = Path(path)
    return registry.load(p.parent, p.name)


def get_model(name: str):
    """The loaded model ``name`` of the root, cached by (path, weights mtime). Raises AdvvizError."""
    path = registry.resolve(root(), name)
    return _load(str(path), registry.fingerprint(path))


def model_key(name: str) -> tuple[str, float]:
    """(path, mtime): what cached results of a model are keyed on."""
    path = registry.resolve(root(), name)
    return str(path), registry.fingerprint(path)


@st.cache_resource(max_entries=8, show_spinner="Reading data set…")
def get_dataset(name: str, split: str, reading: str = "{}"):
    """``reading``: :func:`advviz.data.training_reading` as JSON (hashable, for the cache)."""
    return load_dataset(name, split, **json.loads(reading))


def model_dataset(model, dataset: str, split: str = "dev"):
    """``model.examples`` over the cached data sets: read as the model's training data was (label
    column, ``--label-map``), labels in its order; a data set with other labels is refused
    (AdvvizError, shown by :func:`shown_errors`) rather than scored against the wrong classes."""
    return model.aligned(get_dataset(dataset, split, json.dumps(model.reading(dataset), sort_keys=True)), dataset)


def available_datasets() -> list[str]:
    """Named data sets whose files are in the data directory (no network from the app)."""
    d = default_data_dir()
    return [n for n, s in NAMED_DATASETS.items() if d.is_dir() and all((d / f).is_file() for f in s.files.values())]


@contextlib.contextmanager
def shown_errors(what: str):
    """Run a block; a user-caused or library error becomes one visible message (no traceback)."""
    try:
        yield
    except StreamlitAPIException:
        raise
    except (AdvvizError, ValueError, FileNotFoundError) as e:
        st.error(f"{what}: {e}")
    except Exception as e:  # noqa: BLE001 - the app must keep working; say what failed
        st.error(f"{what} failed: {type(e).__name__}: {e}")


def clean_text(text: str | None) -> tuple[str, str | None]:
    """(text to use, warning or None): empty → error text, long → cut to MAX_WORDS words."""
    words = (text or "").split()
    if not words:
        return "", "Type a sentence (or pick one from a data set) first."
    if len(words) > MAX_WORDS:
        return " ".join(words[:MAX_WORDS]), (f"The text has {len(words):,} words; only the first {MAX_WORDS} are used "
                                             f"(a heatmap of more tokens is unreadable).")
    return " ".join(words), None


def read_upload(upload) -> tuple[list[str], str | None]:
    """Lines of an uploaded text file, or ([], message) when it is too big or not UTF-8 text."""
    if upload is None:
        return [], None
    data = upload.getvalue()
    if len(data) > MAX_UPLOAD_BYTES:
        return [], f"{upload.name} is {len(data) / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB."
    if b"\x00" in data[:4096]:
        return [], f"{upload.name} is not a text file (it contains binary data)."
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return [], f"{upload.name} is not UTF-8 text."
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return [], f"{upload.name} has no non-empty line."
    return lines[:1000], None


def empty_state_no_models() -> bool:
    """Show what to do when the root holds no usable model; True when the page should stop."""
    if ok_names():
        return False
    st.info(f"No trained model under `{root()}` yet. Open **Models** to train the default set "
            f"(GloVe-LSTM on sst2-sent, a few minutes on CPU) or one model of your choice.", icon=":material/inbox:")
    st.page_link("views/models.py", label="Go to Models", icon=":material/inventory_2:")
    return True
