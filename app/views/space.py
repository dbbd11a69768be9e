"""Representation space: 2-D maps of sentence representations, original and adversarial."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from advviz import registry
from advviz.analysis.projection import project_representations
from appkit import plots, shared, sidebar, threads


def _args(name: str, sel, n: int, adversarial: bool, reducer: str) -> tuple:
    path, mtime = shared.model_key(name)
    return (path, mtime, sel.dataset, n, sel.attack if adversarial else None,
            json.dumps(sel.overrides if adversarial else {}, sort_keys=True), reducer, sel.seed)


def _project(path, mtime, dataset, n, attack, overrides_json, reducer, seed, progress=None):
    model = shared._load(path, mtime)
    ds = shared.model_dataset(model, dataset).subset(n, seed)
    return project_representations(
        model, ds.texts, ds.labels, attack, json.loads(overrides_json), reducer=reducer, seed=seed,
        cache_dir=registry.cache_dir(shared.root(), "projections"), progress=progress)


@st.cache_data(max_entries=32, show_spinner=False)
def project_now(args: tuple) -> tuple[pd.DataFrame, dict]:
    return _project(*args)


def umap_or_pca(name: str, sel, n: int, adversarial: bool) -> tuple[pd.DataFrame, dict, str | None]:
    """The UMAP map when ready, else the PCA map now and a note (UMAP runs in the background)."""
    key = _args(name, sel, n, adversarial, "umap")
    fut = threads.jobs().submit(key, _project, *key)
    if fut.done():
        if fut.exception() is not None:
            st.error(f"UMAP failed for {name}: {fut.exception()}; showing PCA.")
        else:
            df, metrics = fut.result()
            return df, metrics, None
    df, metrics = project_now(_args(name, sel, n, adversarial, "pca"))
    return df, metrics, "UMAP is being computed in the background (progress below the maps); PCA meanwhile."


def metrics_table(metrics: dict) -> pd.DataFrame:
    rows = [(k, f"{v:.4g}") for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return pd.DataFrame(rows, columns=["metric", "value"])


def one_model(name: str, sel, n: int, adversarial: bool, segments: bool, reducer: str) -> bool:
    """Draw one model's map and metrics; True when a UMAP is still pending."""
    pending = False
    with shared.shown_errors(f"Projecting {name}"):
        if reducer == "umap":
            df, metrics, note = umap_or_pca(name, sel, n, adversarial)
            if note:
                st.info(note, icon=":material/hourglass_top:")
                pending = True
        else:
            with st.spinner(f"Projecting {name}…"):
                df, metrics = project_now(_args(name, sel, n, adversarial, reducer))
        used = metrics.get("reducer", reducer)
        st.plotly_chart(plots.projection_scatter(df, segments, f"{name} · {used.upper()}"), key=f"space_{name}",
                        config={"displaylogo": False})
        if metrics.get("fallback"):
            st.caption(metrics["fallback"])
        st.dataframe(metrics_table(metrics), hide_index=True, key=f"space_metrics_{name}")
        st.download_button(f"Download points (CSV) — {name}", df.to_csv(index=False),
                           f"projection_{name.replace('/', '_')}.csv", "text/csv", key=f"space_dl_{name}")
    return pending


@st.fragment(run_every=3)
def wait_for_umap() -> None:
    """Poll the background UMAP; refresh the page once it is done."""
    keys = st.session_state.get("space_pending_keys") or []
    if keys and all((f := threads.jobs().get(k)) is None or f.done() for k in keys):
        st.session_state["space_pending_keys"] = []
        st.rerun()
    for k in keys:
        frac, msg = threads.jobs().status(k)
        st.progress(min(1.0, frac), text=f"UMAP of {Path(k[0]).name}: {msg or 'working'}")


def main() -> None:
    sel = sidebar.page_start("Representation space", "Sentence representations in 2-D: colour = gold label, "
                             "● original, ✕ adversarial (the sidebar's attack); originals and adversarial points "
                             "are reduced together.", "Choose one or two models in the sidebar (e.g. freelb and carl).")
    if sel is None:
        return
    if not sel.dataset:
        st.warning("No data set is available (see the sidebar).")
        return
    c1, c2, c3, c4 = st.columns(4)
    reducer = c1.radio("Reducer", ["pca", "umap"], horizontal=True, key="space_reducer",
                       help="PCA is instant; UMAP runs in the background (cached on disk afterwards).")
    n = int(c2.number_input("Dev examples", 20, 2000, 300, step=50, key="space_n"))
    adversarial = c3.checkbox(f"adversarial points ({sel.attack})", value=sel.attack is not None,
                              key="space_adv", disabled=sel.attack is None)
    segments = c4.checkbox("link each pair", value=False, key="space_segments", disabled=not adversarial)
    names = sel.models[:2]
    if len(sel.models) > 2:
        st.caption("Showing the first two selected models side by side.")
    cols = st.columns(len(names))
    pending = []
    for col, name in zip(cols, names):
        with col:
            if one_model(name, sel, n, adversarial and sel.attack is not None, segments, reducer):
                pending.append(_args(name, sel, n, adversarial and sel.attack is not None, "umap"))
    st.session_state["space_pending_keys"] = pending
    if pending:
        wait_for_umap()


main()
