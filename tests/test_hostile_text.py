"""Hostile text for ``inspect``: never a traceback, norms finite, JSON always valid — on both a
word-level LSTM and a WordPiece BERT, through the library and the CLI."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advviz.storage.checkpoint import save_checkpoint
from advviz.cli import main
from advviz.errors import AdvvizError
from advviz.analysis.inspection import inspect
from conftest import make_tiny_bert, make_tiny_rnn

import advviz

RUN = {"data": {"name": "sst2-sent", "label_names": ["negative", "positive"]}}

HOSTILE = {
    "only unknown tokens": "zxqv qqqq wxyz",
    "100k characters": "the movie is good " * 5600,
    "control characters": "the\x00 movie\x07 is\x1b[31m good\r\n\t",
    "right-to-left": "הסרט היה טוב מאוד",
    "arabic": "الفيلم جيد",
    "emoji": "the movie 🎬🍿 is 👍👍 great 😀",
    "combining marks": "e\u0301e\u0301 cafe\u0301",
    "zero-width": "good\u200b\u200bmovie\ufeff",
}


@pytest.fixture(scope="module", params=["lstm", "bert"])
def model(request, tmp_path_factory):
    m = make_tiny_bert() if request.param == "bert" else make_tiny_rnn("lstm")
    return advviz.load(save_checkpoint(tmp_path_factory.mktemp(request.param) / "ck", m, RUN, {}))


def _valid(r: dict) -> None:
    json.loads(json.dumps(r, allow_nan=False))  # strict JSON: no NaN/inf anywhere
    assert all(math.isfinite(t["norm"]) and t["norm"] >= 0 for t in r["tokens"])
    assert math.isclose(sum(r["adv_probs"]), 1.0, rel_tol=1e-4)


@pytest.mark.parametrize("name", list(HOSTILE))
@pytest.mark.parametrize("attack", ["spgd", "pgd"])
def test_hostile_texts(model, name, attack):
    [r] = inspect(model, [HOSTILE[name]], attack)
    _valid(r)
    if name == "100k characters":
        assert r["truncated"]


@pytest.mark.parametrize("text", ["", "   ", "\n\t\r"])
def test_empty_and_whitespace_are_one_clear_error(model, text):
    with pytest.raises(AdvvizError, match="empty"):
        inspect(model, [text], "spgd")


def test_cli_on_hostile_text_prints_valid_json(model, capsys):
    for text in HOSTILE.values():
        assert main(["inspect", str(model.directory), "--text", text, "--attack", "advt", "--json"]) == 0
        _valid(json.loads(capsys.readouterr().out))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(min_size=0, max_size=300), attack=st.sampled_from(["advt", "fgsm", "iadvt", "spgd", "pgd", "freelb"]))
def test_property_never_a_traceback(model, text, attack):
    """Any unicode string: either a valid result or one AdvvizError line (nothing to perturb)."""
    try:
        results = inspect(model, [text], attack)
    except AdvvizError as e:
        msg = str(e)
        assert "\n" not in msg
        assert ("empty" in msg and not text.strip()) or "no tokens the adversary could perturb" in msg
        return
    for r in results:
        _valid(r)
