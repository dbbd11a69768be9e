"""The word-substitution sets shared by textfooler-cf, ASCC and DNE (advviz/substitutions.py)."""

import gzip
import json

import pytest

from advviz import substitutions
from advviz.errors import AdvvizError


def test_parse_normalises(tmp_path):
    p = tmp_path / "n.json.gz"
    p.write_bytes(gzip.compress(json.dumps({"Good": ["fine", "good", "Fine", "nice"], "br": []}).encode()))
    sets = substitutions.load(p)
    assert sets == {"good": ["fine", "nice"], "br": []}
    assert substitutions.describe(sets) == {"words": 2, "with_neighbors": 1, "mean_set_size": 2.0}


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(AdvvizError, match="--neighbors"):
        substitutions.load(tmp_path / "nope.json")
    with pytest.raises(AdvvizError, match="counterfitted_neighbors.json.gz"):
        substitutions.neighbors_path(None, data_dir=tmp_path)


def test_bad_shape_refused(tmp_path):
    p = tmp_path / "n.json"
    p.write_text(json.dumps({"a": "b"}))
    with pytest.raises(AdvvizError, match="not a list"):
        substitutions.load(p)
    p.write_text("[1, 2]")
    with pytest.raises(AdvvizError, match="JSON object"):
        substitutions.load(p)


@pytest.mark.skipif(not substitutions.data.data_dir_search() or not any(
    (d / substitutions.DEFAULT_FILE).is_file() for _, d in substitutions.data.data_dir_search() if d),
    reason="needs the shared data directory")
def test_default_file_counts():
    sets = substitutions.load()
    assert substitutions.describe(sets)["with_neighbors"] == 25591
    assert "film" in sets["movie"]
