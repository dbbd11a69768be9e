"""Importing TextAttack (the optional extra ``advviz[textattack]``) and its NLTK resources without
network or terminal noise, and the model wrapper TextAttack queries."""

from __future__ import annotations

import contextlib
import importlib.util
import io
from pathlib import Path

import numpy as np

from ...config import COMMAND_DEFAULTS
from ...errors import AdvvizError

TEXTATTACK_BATCH_SIZE = COMMAND_DEFAULTS["textattack_batch_size"]

PREFIX = "textattack:"
INSTALL = "pip install -e '.[textattack]' in an advviz checkout (or pip install 'advviz[textattack]')"
STOPWORDS_DIR = Path(__file__).resolve().parent.parent.parent / "resources" / "nltk_data"


def is_textattack(name: str | None) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


_STATE: dict = {}


def _nltk_missing(*resources: str) -> list[str]:
    """The NLTK corpora of ``resources`` found neither unpacked nor as a zip on ``nltk.data.path``."""
    import nltk  # optional and slow to import: loaded only when used

    out = []
    for r in resources:
        try:
            nltk.data.find(f"corpora/{r}")
        except LookupError:
            try:
                nltk.data.find(f"corpora/{r}.zip")
            except LookupError:
                out.append(f"NLTK corpus '{r}' (python -m nltk.downloader {r})")
    return out


def stopword_source() -> str:
    """Where NLTK's English stop words come from: the user's NLTK data, else advviz's copy (added to
    ``nltk.data.path`` here, only then)."""
    import nltk  # optional and slow to import: loaded only when used

    if "stopwords" not in _STATE:
        if not _nltk_missing("stopwords"):
            _STATE["stopwords"] = "nltk_data"
        else:
            if str(STOPWORDS_DIR) not in nltk.data.path:
                nltk.data.path.append(str(STOPWORDS_DIR))
            _STATE["stopwords"] = "advviz (NLTK's English list, 179 words)"
    return _STATE["stopwords"]


def import_textattack():
    """The ``textattack`` module, or one line saying how to install it. TextAttack's import-time
    chatter (its first import tries ``nltk.download`` for corpora it does not need here) is kept off
    the terminal, so that ``--json`` output stays JSON."""
    if "module" in _STATE:
        return _STATE["module"]
    if importlib.util.find_spec("textattack") is None:
        raise AdvvizError(f"TextAttack attacks need the optional extra 'textattack': {INSTALL}")
    try:
        stopword_source()
    except ImportError:
        raise AdvvizError(f"TextAttack attacks need nltk (part of the extra 'textattack'): {INSTALL}") from None
    noise = io.StringIO()
    try:
        with contextlib.redirect_stdout(noise), contextlib.redirect_stderr(noise):
            # the optional extra, imported once here with its chatter kept off the terminal
            import textattack
    except Exception as e:  # noqa: BLE001 - a broken install is one line, its cause named
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise AdvvizError(f"TextAttack is installed but does not import ({type(e).__name__}: {first}); "
                          f"reinstall the extra: {INSTALL}") from None
    _STATE["module"] = textattack
    return textattack


def textattack_version() -> str | None:
    try:
        # inside the try: a missing or odd install reads as 'version unknown'
        from importlib.metadata import version

        return version("textattack")
    except Exception:  # noqa: BLE001
        return None


# --------------------------------------------------------------------------------------------
# the model as TextAttack sees it


def wrapper_for(model, batch_size: int = TEXTATTACK_BATCH_SIZE):
    """A ``textattack.models.wrappers.ModelWrapper`` over ``model`` (an ``advviz.Model``): strings in,
    <float64>[N, C] class probabilities out (renormalised in float64 so TextAttack, which re-applies
    a softmax to rows that do not sum to 1 within 1e-6, takes them as probabilities)."""
    ta = import_textattack()

    class ClassifierWrapper(ta.models.wrappers.ModelWrapper):
        def __init__(self, m, bs):
            self.model = m.classifier  # TextAttack reads .model (device, gradients)
            self._m, self._bs = m, bs

        def __call__(self, text_input_list):
            p = np.asarray(self._m.predict([str(t) for t in text_input_list], self._bs), dtype=np.float64)
            return p / p.sum(axis=1, keepdims=True)

    return ClassifierWrapper(model, batch_size)
