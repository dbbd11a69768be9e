"""Widgets generated from the configuration dataclasses (``advviz/config.py``): each field's
default, help and choices are written once, on the field."""

from __future__ import annotations

import dataclasses

import streamlit as st

from advviz.config import field_type, flag_fields, flag_of
from advviz.limits import maximum


def widget(f: dataclasses.Field, default, key: str, container):
    label, helptext = f.name.replace("_", " "), f"{f.metadata.get('help', '')} (`{flag_of(f)}`)"
    kind = field_type(f)
    choices = f.metadata.get("choices")
    if choices:
        choices = list(choices)
        return container.selectbox(label, choices, index=choices.index(default) if default in choices else 0,
                                   key=key, help=helptext)
    if kind is bool:
        return container.checkbox(label, value=bool(default), key=key, help=helptext)
    if kind is int:  # a count past its documented maximum (limits.MAXIMA) is the config's one error
        top = maximum(f.name)
        return int(container.number_input(label, value=int(default or 0), step=1, key=key,
                                          help=helptext if top is None else f"{helptext}; at most {top:,}"))
    if kind is float:
        return float(container.number_input(label, value=float(default or 0.0), step=0.01, format="%g",
                                            key=key, help=helptext))
    return container.text_input(label, value="" if default is None else str(default), key=key, help=helptext)


def config_widgets(config_cls, key_prefix: str, container=st, defaults: dict | None = None) -> dict:
    """One widget per flagged field of ``config_cls`` (default: ``defaults[name]``, else the
    field's); returns field name -> value. Invalid values are caught by the config's validation."""
    defaults = {**config_cls().to_dict(), **(defaults or {})}
    return {f.name: widget(f, defaults[f.name], f"{key_prefix}_{f.name}", container) for f in flag_fields(config_cls)}


def validate(config_cls, values: dict) -> str | None:
    """The config's own ``ValueError`` message for these values, or None when they are valid."""
    try:
        config_cls.from_overrides(values)
    except (ValueError, TypeError) as e:
        return str(e)
    return None
