"""The atlas as a table: a pandas DataFrame, CSV or JSON file."""

from __future__ import annotations

import os
from pathlib import Path

from ...storage.jsonio import dumps
from ...storage.outputs import write_output
from .records import WORD_KEYS


# --------------------------------------------------------------------------------------------
# tables and files


def atlas_frame(atlas: dict):
    """The words of an atlas as a pandas DataFrame (``moved_to`` as a JSON list per cell)."""
    import pandas as pd  # optional and slow to import: loaded only when used

    rows = [{**r, "moved_to": dumps(r["moved_to"], ensure_ascii=False)} for r in atlas["words"]]
    cols = list(WORD_KEYS) + [k for k in ("count_b", "mean_norm_b", "top_share_b", "delta_mean_norm",
                                          "delta_top_share") if rows and k in rows[0]]
    return pd.DataFrame(rows, columns=cols)


def write_atlas(atlas: dict, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """``.csv``: the word table; ``.json``: the whole atlas (temporary sibling + rename, never over
    a file advviz did not write unless ``overwrite``: :mod:`advviz.storage.outputs`)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return write_output(path, lambda tmp: tmp.write_text(dumps(atlas, indent=1) + "\n", encoding="utf-8"),
                            overwrite=overwrite)
    return write_output(path, lambda tmp: atlas_frame(atlas).to_csv(tmp, index=False), overwrite=overwrite)
