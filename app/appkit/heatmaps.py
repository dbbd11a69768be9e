"""The token heatmap component of "Which words move", shared with "Word atlas": rows that tokenize
alike share one heatmap, every heatmap on a page shares one colour scale (‖δᵢ‖)."""

from __future__ import annotations

import streamlit as st

from . import plots

MAX_COLUMNS = 16  # tokens per heatmap row before a long sentence wraps (wider figures get squeezed)

CAPTION = ("Cell colour: ‖δᵢ‖ (shared scale). Label: the word δᵢ points to (the vocabulary entry nearest "
           "to vᵢ+δᵢ); · = not moved. Hover for cosine and neighbour rank.")


def zmax_of(rows: list[tuple[str, dict]]) -> float:
    return max((t["norm"] for _, r in rows for t in r["tokens"]), default=0.0)


def token_heatmaps(rows: list[tuple[str, dict]], key: str, zmax: float | None = None, caption: bool = True) -> None:
    """Draw (row label, result with ``tokens``) rows: one heatmap per tokenization."""
    zmax = zmax_of(rows) if zmax is None else zmax
    groups: dict[tuple, list] = {}
    for label, r in rows:
        groups.setdefault(tuple(t["token"] for t in r["tokens"]), []).append((label, r))
    if len(groups) > 1:
        st.caption("The models tokenize differently: one heatmap per tokenization, one colour scale for all.")
    for i, g in enumerate(groups.values()):
        n = len(g[0][1]["tokens"])
        for j, start in enumerate(range(0, max(n, 1), MAX_COLUMNS)):
            end = min(n, start + MAX_COLUMNS)
            if n > MAX_COLUMNS:  # a long sentence wraps: one figure per MAX_COLUMNS tokens, same colour scale
                st.caption(f"tokens {start + 1}–{end} of {n}")
            part = [(label, {**r, "tokens": r["tokens"][start:end]}) for label, r in g]
            fig = plots.token_heatmap(part, zmax)
            st.plotly_chart(fig, width="content", key=f"{key}_{i}" + (f"_{j}" if j else ""),
                            config={"displaylogo": False})
    if caption:
        st.caption(CAPTION)
