"""Widgets generated from config dataclasses: each field's default, help and choices are written
once, on the field (``metadata['flag'|'help'|'choices']``)."""

from __future__ import annotations

import dataclasses

import streamlit as st


def field_kind(f: dataclasses.Field) -> type:
    """bool / int / float / str from the field's annotation (``int | None`` counts as int)."""
    if "type" in f.metadata:
        return f.metadata["type"]
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    for name, typ in (("bool", bool), ("int", int), ("float", float)):
        if t.startswith(name):
            return typ
    return str


def flagged_fields(config_cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(config_cls) if f.metadata.get("flag")]


def widget(f: dataclasses.Field, default, key: str, container):
    label, helptext = f.name.replace("_", " "), f"{f.metadata.get('help', '')} (`{f.metadata['flag']}`)"
    kind = field_kind(f)
    choices = f.metadata.get("choices")
    if choices:
        choices = list(choices)
        return container.selectbox(label, choices, index=choices.index(default) if default in choices else 0,
                                   key=key, help=helptext)
    if kind is bool:
        return container.checkbox(label, value=bool(default), key=key, help=helptext)
    if kind is int:
        return int(container.number_input(label, value=int(default or 0), step=1, key=key, help=helptext))
    if kind is float:
        return float(container.number_input(label, value=float(default or 0.0), step=0.01, format="%g",
                                            key=key, help=helptext))
    return container.text_input(label, value="" if default is None else str(default), key=key, help=helptext)


def config_widgets(config_cls, key_prefix: str, container=st) -> dict:
    """One widget per flagged field of ``config_cls`` (default: the field's default); returns
    field name -> value. Invalid combinations are caught by the config's own validation later."""
    defaults = config_cls()
    return {f.name: widget(f, getattr(defaults, f.name), f"{key_prefix}_{f.name}", container)
            for f in flagged_fields(config_cls)}


def validate(config_cls, values: dict) -> str | None:
    """The config's own ``ValueError`` message for these values, or None when they are valid."""
    try:
        config_cls.from_overrides(values)
    except (ValueError, TypeError) as e:
        return str(e)
    return None


def trained_eps(sel, rows: list[dict]) -> float | None:
    """The ε a selected model was trained with under this same method (the scale its embeddings
    were hardened at), so that an LSTM trained with SPGD ε 2 is not first attacked at the paper's 25."""
    by_name = {r["name"]: r for r in rows}
    for name in sel.models:
        r = by_name.get(name) or {}
        if r.get("method") == sel.attack and isinstance(r.get("epsilon"), (int, float)) and r["epsilon"] > 0:
            return float(r["epsilon"])
    return None


def default_eps(sel, rows: list[dict] = ()) -> str:
    """Half, once and twice: the sidebar's ε when the user changed it, else the ε a selected model
    was trained with under this attack, else the attack's default (the paper's)."""
    from advviz.methods import get_method

    paper = getattr(get_method(sel.attack).Config(), "epsilon", 0.0)
    side = sel.overrides.get("epsilon")
    e = side if side not in (None, paper) else (trained_eps(sel, list(rows)) or paper or 1.0)
    return ", ".join(f"{e * f:g}" for f in (0.5, 1, 2))
