"""The one sidebar every page shares: model(s), data set, attack and its parameters, seed.

Rendered by the entry script before the page runs, so its widgets keep their values across
pages; pages read the choice with :func:`selection`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import streamlit as st

from advviz import registry
from advviz.config import default_attack, family_of
from advviz.methods import attacks, resolve_method

from . import forms, shared


@dataclass
class Selection:
    models: list[str] = field(default_factory=list)
    dataset: str | None = None
    attack: str | None = None
    overrides: dict = field(default_factory=dict)
    seed: int = 0


def _keep_valid(key: str, options: list, multi: bool) -> None:
    """Drop a remembered value that is no longer an option (a model deleted meanwhile)."""
    if key not in st.session_state:
        return
    v = st.session_state[key]
    if multi:
        gone = [x for x in (v or []) if x not in options]
        if gone:
            st.sidebar.warning(f"No longer available (files deleted, moved or incomplete): {', '.join(gone)}. "
                               f"Removed from the selection.")
        st.session_state[key] = [x for x in (v or []) if x in options]
    elif v not in options:
        del st.session_state[key]


def _models(rows: list[dict]) -> list[str]:
    names = [r["name"] for r in rows if r["status"] == "ok"]
    labels = {r["name"]: registry.label(r) for r in rows}
    _keep_valid("sb_models", names, multi=True)
    if "sb_models" not in st.session_state:
        st.session_state["sb_models"] = names[:1]
    return st.sidebar.multiselect("Model(s)", names, key="sb_models", max_selections=4, format_func=labels.get,
                                  help="Checkpoints under the models root; pages compare them side by side.",
                                  placeholder="no model yet" if not names else "choose models")


def _dataset(rows: list[dict], chosen: list[str]) -> str | None:
    names = shared.available_datasets()
    if not names:
        st.sidebar.caption("No data set found in the data directory (set ADVVIZ_DATA_DIR).")
        return None
    _keep_valid("sb_dataset", names, multi=False)
    by_name = {r["name"]: r for r in rows}
    first = by_name.get(chosen[0], {}).get("dataset") if chosen else None
    index = names.index(first) if first in names else (names.index("sst2-sent") if "sst2-sent" in names else 0)
    return st.sidebar.selectbox("Data set", names, index=index, key="sb_dataset")


def _attack(rows: list[dict], chosen: list[str]) -> tuple[str | None, dict]:
    """The attack and the values the user changed. The widgets start at the attack's defaults after
    the family preset of the first selected model (``config.FAMILY_PRESETS``); each model is then
    attacked with its own family's preset plus the changed values (``analysis.attacks``)."""
    table = attacks()
    names = list(table)
    _keep_valid("sb_attack", names, multi=False)
    default = names.index(default_attack("app")) if default_attack("app") in names else 0
    name = st.sidebar.selectbox("Attack", names, index=default, key="sb_attack",
                                help="The adversary used by Which words move, Representation space and Robustness.")
    arch = next((r.get("arch") for r in rows if r["name"] in chosen[:1]), None) or "lstm"
    defaults = resolve_method(name, arch)
    with st.sidebar.expander(f"{name} parameters ({family_of(arch)} preset)"):
        values = forms.config_widgets(table[name].Config, f"sb_{name}_{family_of(arch)}", defaults=defaults)
        err = forms.validate(table[name].Config, values)
        if err:
            st.error(err)
            return name, {}  # the defaults until the value is fixed
    return name, {k: v for k, v in values.items() if v != defaults[k]}


def render() -> Selection:
    rows = shared.models()
    st.sidebar.caption(f"Models root: `{shared.root()}`")
    chosen = _models(rows)
    dataset = _dataset(rows, chosen)
    attack, overrides = _attack(rows, list(chosen))
    seed = int(st.sidebar.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1, key="sb_seed"))
    sel = Selection(list(chosen), dataset, attack, overrides, seed)
    st.session_state["selection"] = sel
    return sel


def selection() -> Selection:
    return st.session_state.get("selection") or Selection()


def page_start(title: str, caption: str | None = None,
               models_hint: str = "Choose one or more models in the sidebar.") -> "Selection | None":
    """A page's title and caption, then the empty states every analysis page shares (no model in
    the root, none selected). The selection, or None: stop rendering."""
    st.title(title)
    if caption:
        st.caption(caption)
    if shared.empty_state_no_models():
        return None
    sel = selection()
    if not sel.models:
        st.info(models_hint, icon=":material/arrow_back:")
        return None
    return sel
