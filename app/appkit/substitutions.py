"""The per-token bar of weights of an attack over substitution sets (``--attack ascc``): for each
token that has substitutes, its set (the token first) with the share of the convex combination
each member gets, the one the adversary leans to (``moved_to``) highlighted. Drawing only: the
sets and weights come from ``inspect``'s per-token ``substitutions``."""

from __future__ import annotations

import html

import streamlit as st

from .plots import QUALITATIVE

BAR_PX = 240  # width of a full (weight 1) bar
SELF, LEAN, OTHER = QUALITATIVE[0], QUALITATIVE[5], "#999999"


def _bar(word: str, weight: float, color: str) -> str:
    width = max(1, round(BAR_PX * weight)) if weight > 0 else 0
    return (f'<div style="display:flex;align-items:center;gap:6px;font-size:13px">'
            f'<span style="width:120px;text-align:right;overflow:hidden">{html.escape(word)}</span>'
            f'<span style="display:inline-block;height:11px;width:{width}px;background:{color}"></span>'
            f'<span style="color:#555">{weight:.3f}</span></div>')


def token_bars(token: dict) -> str:
    """HTML of one token's weights (the token itself, then its substitutes by weight)."""
    subs = token.get("substitutions") or []
    own, rest = subs[0], sorted(subs[1:], key=lambda s: -s[1])
    lean = token.get("moved_to")
    parts = [_bar(own[0], own[1], SELF)]
    parts += [_bar(w, x, LEAN if w == lean else OTHER) for w, x in rest]
    return (f'<div style="margin:4px 12px 8px 0;display:inline-block;vertical-align:top">'
            f'<b>{html.escape(token["token"])}</b> → {html.escape(lean or "·")}{"".join(parts)}</div>')


def weight_bars(rows: list[tuple[str, dict]]) -> None:
    """For each (row label, inspect result) of an attack over substitution sets, the bars of every
    token with at least one substitute; nothing for other attacks."""
    for label, r in rows:
        toks = [t for t in r["tokens"] if len(t.get("substitutions") or []) > 1]
        if not toks:
            continue
        st.markdown(f"**Substitution weights** — `{html.escape(label)}` (blue: the word itself; orange: the "
                    f"substitute the adversary leans to, its `moved_to`)")
        st.markdown("".join(token_bars(t) for t in toks), unsafe_allow_html=True)
