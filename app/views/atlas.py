"""Word atlas: which words the sidebar's attack moves across a data set split, toward which words,
against saliency and training frequency; a second selected model turns it into a comparison.
The attack pass is the library's (``advviz.analysis.words``), cached beside each checkpoint (shared
with ``advviz words``) and in memory; this page only draws."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from advviz.analysis import words
from advviz.analysis.attacks import check_attack
from advviz.data import load_splits
from advviz.storage.jsonio import dumps
from appkit import heatmaps, plots, render, shared, sidebar

MAX_SENTENCES = 8  # heatmaps listed for a chosen word
WINDOW = 15  # tokens of a sentence's heatmap around the chosen word
TOP_PAIRS = 25
SORTS = {"score": "mean ‖δ‖ × count", "count": "count", "mean_norm": "mean ‖δ‖", "top_share": "top-3 share",
         "saliency": "saliency", "frequency": "training frequency", "flip_share": "flip share", "word": "word"}
DELTA_SORTS = {"delta_mean_norm": "Δ mean ‖δ‖ (B − A)", "delta_top_share": "Δ top-3 share (B − A)"}


@st.cache_resource(max_entries=8, show_spinner=False)
def splits_of(dataset: str) -> list[str]:
    return list(load_splits(dataset))


def _subset(model, dataset: str, split: str, n: int, seed: int):
    return shared.model_dataset(model, dataset, split).subset(n, seed)


@st.cache_resource
def _done() -> dict:
    """Settings whose records are on disk in this server -> "computed" (here, by this server) or "cache"."""
    return {}


@st.cache_data(max_entries=16, show_spinner="Reading the atlas…")
def records(path: str, mtime: float, dataset: str, split: str, n: int, attack: str, overrides_json: str,
            seed: int) -> tuple[words.TokenRecords, dict]:
    """The attack's records (from the library's disk cache once :func:`ensure` has run)."""
    model = shared._load(path, mtime)
    ds = _subset(model, dataset, split, n, seed)
    return words.attack_tokens(model, ds.texts, ds.labels, attack, json.loads(overrides_json), seed=seed,
                               cache_dir=words.cache_dir_for(model))


@st.cache_data(max_entries=32, show_spinner=False)
def atlas_of(key: tuple, dataset: str, split: str, min_count: int) -> dict:
    model = shared._load(key[0], key[1])
    rec, meta = records(*key)
    return words.atlas_from_records(model, rec, meta, dataset, split, min_count)


def ensure(name: str, key: tuple) -> None:
    """Run the attack with a progress bar unless its records are cached; errors are the caller's."""
    if key in _done():
        return
    path, mtime, dataset, split, n, attack, overrides_json, seed = key
    model = shared._load(path, mtime)
    ds = _subset(model, dataset, split, n, seed)
    overrides = json.loads(overrides_json)
    source = "cache"
    if words.cached_records(model, ds.texts, ds.labels, attack, overrides, seed) is None:
        check_attack(model, attack, overrides)  # a bad setting is one line before any work
        bar = st.progress(0.0, text=f"{name}: attacking {len(ds)} sentences with {attack}…")
        words.attack_tokens(model, ds.texts, ds.labels, attack, overrides, seed=seed,
                            cache_dir=words.cache_dir_for(model),
                            progress=lambda f, m: bar.progress(min(1.0, f), text=f"{name}: {m}"))
        bar.empty()
        source = "computed"
    _done()[key] = source


def settings_row(sel) -> tuple[str, int, int] | None:
    c1, c2, c3 = st.columns(3)
    with shared.shown_errors(f"Reading {sel.dataset}"):
        splits = splits_of(sel.dataset)
        split = c1.selectbox("Split", splits, index=splits.index("dev") if "dev" in splits else 0, key="atlas_split")
        size = len(shared.get_dataset(sel.dataset, split))
        if size == 0:
            st.error(f"{sel.dataset}/{split} has no sentences.")
            return None
        n = int(c2.number_input("Sentences (a seeded subset)", 1, size, min(size, 1000), step=100,
                                key=f"atlas_n_{sel.dataset}_{split}"))
        min_count = int(c3.number_input("Min count", 1, 100_000, 3, key="atlas_min_count",
                                        help="Only words that occur at least this often in the sentences."))
        return split, n, min_count
    return None


def word_table(atlas: dict, compare: bool) -> str | None:
    """The sortable, searchable table; returns the chosen word (a clicked row or the selectbox)."""
    c1, c2 = st.columns([2, 1])
    query = c1.text_input("Search a word", key="atlas_search", placeholder="e.g. good").strip().lower()
    sorts = {**SORTS, **(DELTA_SORTS if compare else {})}
    if st.session_state.get("atlas_sort") not in sorts:
        st.session_state.pop("atlas_sort", None)
    order = c2.selectbox("Order", list(sorts), format_func=sorts.get, key="atlas_sort",
                         help="Descending (words A–Z); the table's column headers sort too.")
    rows = words.sort_rows([dict(r) for r in atlas["words"]], order, ascending=order == "word")
    if query:
        rows = [r for r in rows if query in r["word"].lower()]
    df = pd.DataFrame(rows)
    if df.empty:
        st.info("No word matches." if query else "No word reaches the minimum count.")
        return None
    df["moved_to"] = [render.targets_str(t) for t in df["moved_to"]]
    cols = [c for c in ("word", "count", "mean_norm", "top_share", "moved_to", "saliency", "frequency", "flip_share",
                        "mean_norm_b", "top_share_b", "delta_mean_norm", "delta_top_share") if c in df]
    fmt = {c: st.column_config.NumberColumn(format="%.4f") for c in ("mean_norm", "saliency", "mean_norm_b",
                                                                      "delta_mean_norm")}
    fmt.update({c: st.column_config.NumberColumn(format="%.3f") for c in ("top_share", "flip_share", "top_share_b",
                                                                        "delta_top_share")})
    event = st.dataframe(df[cols], hide_index=True, key="atlas_table", on_select="rerun",
                         selection_mode="single-row", column_config=fmt, height=380)
    picked = list(getattr(getattr(event, "selection", None), "rows", []) or [])
    clicked = df["word"].iloc[picked[0]] if picked and picked[0] < len(df) else None
    if clicked is not None and clicked != st.session_state.get("atlas_clicked"):
        st.session_state["atlas_clicked"] = clicked
        st.session_state["atlas_word"] = clicked  # a click in the table chooses the word below
    options = [""] + df["word"].tolist()[:2000]
    if st.session_state.get("atlas_word") not in options:
        st.session_state.pop("atlas_word", None)
    return st.selectbox("Sentences of (or click a row)", options, key="atlas_word",
                        format_func=lambda w: w or "— choose a word —") or None


def around(tokens: list[dict], word: str, width: int = WINDOW) -> list[dict]:
    """The ``width`` tokens centred on the first occurrence of ``word`` (all of a short sentence),
    so the heatmap cells of a long sentence stay readable."""
    if len(tokens) <= width:
        return tokens
    at = next((k for k, t in enumerate(tokens) if t["token"] == word), 0)
    start = min(max(0, at - width // 2), len(tokens) - width)
    return tokens[start: start + width]


def sentences(word: str, results: list[tuple[str, dict]], texts: list[str], label_names: list[str]) -> None:
    first = results[0][1]
    idx = words.sentences_of(first["rec"], first["vocab"], word)
    if not idx:
        st.info(f"“{word}” is not a token of {results[0][0]}.")
        return
    st.markdown(f"**“{word}”** occurs in {len(idx)} sentence{'s' if len(idx) != 1 else ''}"
                + (f"; the first {MAX_SENTENCES} are shown" if len(idx) > MAX_SENTENCES else ""))
    shown = idx[:MAX_SENTENCES]
    per = [[(name, {"tokens": around(words.sentence_tokens(r["rec"], r["vocab"], i), word)}) for name, r in results]
           for i in shown]
    zmax = max((heatmaps.zmax_of(rows) for rows in per), default=0.0)
    for k, (i, rows) in enumerate(zip(shown, per)):
        gold = int(first["rec"].label[i])
        flips = " · ".join(f"{name}: {render.name_of(int(r['rec'].pred[i]), label_names)} → "
                           f"{render.name_of(int(r['rec'].adv_pred[i]), label_names)}"
                           + (" (flipped)" if r["rec"].pred[i] != r["rec"].adv_pred[i] else "")
                           for name, r in results)
        st.markdown(f"{k + 1}. [{render.name_of(gold, label_names)}] {render.escape(texts[i][:300])}  \n"
                    f"<small>{render.escape(flips)}</small>", unsafe_allow_html=True)
        heatmaps.token_heatmaps(rows, f"atlas_sent_{k}", zmax, caption=False)
    st.caption(heatmaps.CAPTION + f" Heatmaps show at most {WINDOW} tokens around the word.")


def summary(results: list[tuple[str, dict]]) -> pd.DataFrame:
    rows = []
    for name, r in results:
        source = _done().get(r["key"], "cache" if r["atlas"]["cached"] else "computed")
        a = r["atlas"]
        c = a["correlations"]
        rows.append({"model": name, "sentences": a["n_examples"], "words shown": a["n_words"],
                     "flip rate": a["flip_rate"], "ρ(mean ‖δ‖, saliency)": c["mean_norm_saliency"],
                     "ρ(mean ‖δ‖, frequency)": c["mean_norm_frequency"],
                     "source": {"cache": "disk cache", "computed": "computed"}.get(source, source)})
    return pd.DataFrame(rows)


def main() -> None:
    sel = sidebar.page_start("Word atlas", "Which words the sidebar's attack moves across a whole split, toward "
                             "which words, and whether those are the words the model relies on (saliency) or just "
                             "frequent ones. Select a second model to compare (e.g. baseline and carl).",
                             "Choose one model in the sidebar (a second one to compare).")
    if sel is None:
        return
    if not sel.dataset or not sel.attack:
        st.warning("A data set and an attack are needed (see the sidebar).")
        return
    chosen = settings_row(sel)
    if chosen is None:
        return
    split, n, min_count = chosen
    names = sel.models[:2]
    if len(sel.models) > 2:
        st.caption("Comparing the first two selected models.")
    overrides = json.dumps(sel.overrides, sort_keys=True)
    st.caption(f"Attack **{sel.attack}** with the sidebar's parameters (each model's family preset), on {n} "
               f"sentences of {sel.dataset}/{split} (seed {sel.seed}), against each sentence's gold label as "
               f"`advviz eval --attack` does. Results are cached beside each checkpoint, shared with `advviz words`.")
    keys = {}
    for name in names:
        with shared.shown_errors(f"{name}"):
            path, mtime = shared.model_key(name)
            keys[name] = (path, mtime, sel.dataset, split, n, sel.attack, overrides, sel.seed)
    settings = tuple(keys.values())
    ready = all(k in _done() for k in settings) or _all_cached(keys)
    if not ready:
        if st.button("Compute the atlas", type="primary", key="atlas_go", icon=":material/map:"):
            st.session_state["atlas_request"] = settings
        if st.session_state.get("atlas_request") != settings:
            st.info("Press **Compute the atlas**: one attack pass over the sentences per model, with progress.")
            return
    results: list[tuple[str, dict]] = []
    texts, label_names = [], []
    for name, key in keys.items():
        with shared.shown_errors(f"Word atlas of {name}"):
            ensure(name, key)
            rec, _ = records(*key)
            model = shared._load(key[0], key[1])
            results.append((name, {"rec": rec, "vocab": words.model_vocab(model), "key": key,
                                   "atlas": atlas_of(key, sel.dataset, split, min_count)}))
            if not texts:
                texts, label_names = _subset(model, sel.dataset, split, n, sel.seed).texts, list(model.label_names)
    if not results:
        return
    show(results, texts, label_names)


def _all_cached(keys: dict) -> bool:
    """True when every model's records are on disk already (served without pressing the button)."""
    try:
        for name, key in keys.items():
            model = shared._load(key[0], key[1])
            ds = _subset(model, key[2], key[3], key[4], key[7])
            if words.cached_records(model, ds.texts, ds.labels, key[5], json.loads(key[6]), key[7]) is None:
                return False
            _done().setdefault(key, "cache")
    except Exception:  # noqa: BLE001 - any problem shows when the atlas is computed
        return False
    return True


def show(results: list[tuple[str, dict]], texts: list[str], label_names: list[str]) -> None:
    compare = len(results) == 2
    atlas = results[0][1]["atlas"]
    if compare:
        atlas = words.compare_atlases(atlas, results[1][1]["atlas"])
    st.dataframe(summary(results), hide_index=True, key="atlas_summary",
                 column_config={c: st.column_config.NumberColumn(format="%.3f")
                                for c in ("flip rate", "ρ(mean ‖δ‖, saliency)", "ρ(mean ‖δ‖, frequency)")})
    names = tuple(name for name, _ in results)
    tab_words, tab_map, tab_pairs = st.tabs(["Words", "Frequency vs ‖δ‖", "moved_to pairs"])
    with tab_words:
        if compare:
            st.caption(f"A = {names[0]}, B = {names[1]}: Δ = B − A on the words both tokenize alike; a negative "
                       f"Δ mean ‖δ‖ is a word B's training protects (the attack moves it less).")
        word = word_table(atlas, compare)
        if word:
            sentences(word, results, texts, label_names)
    with tab_map:
        if compare:
            mode = st.radio("Show", ["delta", "both"], horizontal=True, key="atlas_mode",
                            format_func={"delta": "Δ per word (B − A)", "both": "both models"}.get)
            st.plotly_chart(plots.atlas_two_models(pd.DataFrame(atlas["words"]), names, mode), key="atlas_scatter",
                            config={"displaylogo": False})
        else:
            st.plotly_chart(plots.atlas_scatter(pd.DataFrame(atlas["words"]), names[0]), key="atlas_scatter",
                            config={"displaylogo": False})
        st.caption("One point per word (at least the minimum count). Hover for the word and where it is pushed."
                   + (f" Δ per word: below 0, {names[1]} moves the word less than {names[0]} does; colour = Δ "
                      f"top-3 share." if compare else ""))
    with tab_pairs:
        cols = st.columns(len(results))
        for col, (name, r) in zip(cols, results):
            pairs = words.pairs(r["rec"], r["vocab"], TOP_PAIRS)
            if pairs:
                col.plotly_chart(plots.pair_bars(pairs, name), key=f"atlas_pairs_{name}",
                                 config={"displaylogo": False})
            else:
                col.info(f"{name}: the attack moved no word.")
    c1, c2 = st.columns(2)
    c1.download_button("Download the atlas (CSV)", words.atlas_frame(atlas).to_csv(index=False), "word_atlas.csv",
                       "text/csv", key="atlas_dl_csv")
    c2.download_button("Download the atlas (JSON)", dumps(atlas, indent=1), "word_atlas.json", "application/json",
                       key="atlas_dl_json")


main()
