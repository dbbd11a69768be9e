"""Reconstructions: what a RAR model's head reads back from adversarial representations (Table 6)."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from advviz import registry
from advviz.config import default_attack
from advviz.analysis.reconstruct import flip_mask, reconstruct_dataset, summarize
from appkit import render, shared, sidebar



KEEP = 64  # reconstructed slices kept in the server's memory


@st.cache_resource(show_spinner=False)
def _results() -> dict:
    """The server's store of reconstructed slices (request -> DataFrame). Not ``st.cache_data``
    around the library call: a progress bar moved from inside a cached function cannot be
    replayed on a cache hit (Streamlit's CacheReplayClosureError)."""
    return {}


def run_reconstruct(model_key, judge_key, texts: tuple, labels: tuple, attack: str, overrides_json: str,
                    seed: int, bar=None) -> pd.DataFrame:
    """``advviz reconstruct``'s function on the whole slice with the same seed (so the page shows
    the command's rows, a random start included), the bar following its progress callback."""
    store, key = _results(), (model_key, judge_key, texts, labels, attack, overrides_json, seed)
    if key not in store:
        def progress(done, total):
            if bar is not None:
                bar.progress(done / max(total, 1), text=f"{done}/{total} reconstructed")

        model = shared._load(*model_key)
        judge = shared._load(*judge_key) if judge_key else None
        df = reconstruct_dataset(model, list(texts), list(labels), attack, json.loads(overrides_json),
                                 judge=judge, seed=seed, progress=progress)
        while len(store) >= KEEP:
            store.pop(next(iter(store)))  # the oldest
        store[key] = df
    return store[key].copy()


def _names(df: pd.DataFrame, label_names: list[str]) -> pd.DataFrame:
    out = df.copy()
    for c in [c for c in out.columns if c == "label" or "pred" in c]:
        if out[c].notna().any() and pd.api.types.is_integer_dtype(out[c].dropna()):
            out[c] = out[c].map(lambda v: label_names[int(v)] if pd.notna(v) and 0 <= int(v) < len(label_names) else v)
    return out


def choose_models(sel) -> tuple[str, str | None] | None:
    rar = [r["name"] for r in registry.rar_models(shared.models())]
    if not rar:
        st.info("No RAR model yet — train one on **Models** with method `rar` or `carl+rar`. Its reconstruction "
                "head is what this page shows.", icon=":material/inbox:")
        st.page_link("views/models.py", label="Go to Models", icon=":material/inventory_2:")
        return None
    c1, c2 = st.columns(2)
    default = next((m for m in sel.models if m in rar), rar[0])
    model = c1.selectbox("RAR model", rar, index=rar.index(default), key="rec_model")
    others = [n for n in shared.ok_names() if n != model]
    judge = c2.selectbox("Judge model (predicts on both sentences)", ["(none)"] + others, key="rec_judge",
                         index=1 if others else 0)
    return model, None if judge == "(none)" else judge


def one_sentence(model: str, judge: str | None, sel) -> None:
    with st.form("rec_form", border=False):
        text = st.text_input("Sentence", value="a charming and often affecting journey .", key="rec_text",
                             max_chars=20_000)
        st.form_submit_button("Reconstruct", type="primary")
    text, warning = shared.clean_text(text)
    if warning:
        st.warning(warning)
    if not text:
        return
    with shared.shown_errors(f"Reconstructing with {model}"):
        m = shared.get_model(model)
        label = int(m.predict([text]).argmax())  # attack the model's own prediction
        df = run_reconstruct(shared.model_key(model), shared.model_key(judge) if judge else None, (text,), (label,),
                             sel.attack or default_attack("reconstruct"),
                             json.dumps(sel.overrides, sort_keys=True), sel.seed)
        r = _names(df, m.label_names).iloc[0]
        st.markdown(f"**Original** — {render.highlight_changes(r['text'], r['text'])}", unsafe_allow_html=True)
        st.markdown(f"**Reconstructed** — {render.highlight_changes(r['text'], r['reconstructed_text'])}",
                    unsafe_allow_html=True)
        preds = {"": ["original", "reconstructed"], f"{model}": [r["pred"], r["pred_on_reconstructed"]]}
        if judge:
            preds[f"judge: {judge}"] = [r["judge_pred"], r["judge_pred_on_reconstructed"]]
        st.dataframe(pd.DataFrame(preds), hide_index=True, key="rec_one_table")


def data_slice(model: str, judge: str | None, sel) -> None:
    if not sel.dataset:
        st.warning("No data set is available (see the sidebar).")
        return
    ds = shared.get_dataset(sel.dataset, "dev")
    c1, c2 = st.columns(2)
    n = int(c1.number_input("Examples", 1, 2000, 64, step=32, key="rec_n"))
    start = int(c2.number_input("Starting at", 0, max(0, len(ds) - 1), 0, step=64, key="rec_start"))
    if st.button(f"Reconstruct {sel.dataset}/dev[{start}:{start + n}]", key="rec_go"):
        st.session_state["rec_request"] = (model, judge, sel.dataset, start, n, sel.attack, sel.seed,
                                           json.dumps(sel.overrides, sort_keys=True))
    req = st.session_state.get("rec_request")
    if not req or req[:2] != (model, judge) or req[2] != sel.dataset:
        st.caption("Choose a slice and press the button; results are cached.")
        return
    _, _, dataset, start, n, attack, seed, overrides_json = req
    with shared.shown_errors(f"Reconstructing {dataset} with {model}"):
        ds = shared.model_dataset(shared.get_model(model), dataset)
        texts, labels = tuple(ds.texts[start:start + n]), tuple(ds.labels[start:start + n])
        bar = st.progress(0.0, text="reconstructing…")
        df = run_reconstruct(shared.model_key(model), shared.model_key(judge) if judge else None, texts, labels,
                             attack or default_attack("reconstruct"), overrides_json, seed, bar=bar)
        bar.empty()
        show_table(df, shared.get_model(model).label_names, judge)


def show_table(df: pd.DataFrame, label_names: list[str], judge: str | None) -> None:
    s = summarize(df)  # the same counts as `advviz reconstruct`
    c1, c2, c3 = st.columns(3)
    c1.metric("reconstructions that differ", f"{s['changed']}/{s['n']}")
    c2.metric("changed and flip the RAR model", f"{s['flips_self']}")
    if judge:
        c3.metric("changed and flip the judge", f"{s['flips_judge']}")
    only = st.checkbox("only rows that flip the judge", key="rec_only_flips", disabled=not judge)
    view = df[flip_mask(df, "judge")] if only and judge else df
    st.dataframe(_names(view, label_names), hide_index=True, key="rec_table",
                 column_config={"text": st.column_config.TextColumn(width="large"),
                                "reconstructed_text": st.column_config.TextColumn(width="large")})
    st.download_button("Download table (CSV)", view.to_csv(index=False), "reconstructions.csv", "text/csv",
                       key="rec_dl")
    with st.expander(f"Changed words highlighted (first {min(20, len(view))} rows of the table)"):
        for _, r in view.head(20).iterrows():
            st.markdown(f"{render.highlight_changes(r['text'], r['reconstructed_text'])}", unsafe_allow_html=True)


def main() -> None:
    st.title("Reconstructions")
    st.caption("RAR: the sentence a reconstruction head reads from adversarial token representations, "
               "with the RAR model's and a judge model's predictions on both (CARL/RAR paper, Table 6).")
    if shared.empty_state_no_models():
        return
    sel = sidebar.selection()
    chosen = choose_models(sel)
    if chosen is None:
        return
    st.caption(f"Attack: **{sel.attack}** with the sidebar's parameters.")
    tab1, tab2 = st.tabs(["One sentence", "A data-set slice"])
    with tab1:
        one_sentence(*chosen, sel)
    with tab2:
        data_slice(*chosen, sel)


main()
