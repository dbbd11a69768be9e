"""Robustness: accuracy vs ε under the sidebar's attack, representation drift, the discrete attacks
TextAttack runs (DeepWordBug, TextFooler-style swaps), perplexity gaps and pairwise significance;
computed on demand, cached, downloadable."""

from __future__ import annotations

import itertools
import json

import pandas as pd
import streamlit as st

from advviz import registry
from advviz.analysis import lm
from advviz.analysis.lm import adversarial_perplexity
from advviz.analysis.robustness import default_epsilons, evaluate_under_attack, parse_epsilons
from advviz.analysis.stats import compare_models
from appkit import discrete, plots, shared, sidebar

SCALARS = ("name", "epsilon", "clean_accuracy", "accuracy", "cosine", "euclidean", "flip_rate", "n")


@st.cache_data(max_entries=64, show_spinner=False)
def attack_curve(key: tuple, dataset: str, n: int, attack: str, overrides_json: str, epsilons: tuple,
                 seed: int) -> list[dict]:
    model = shared._load(*key)
    ds = shared.model_dataset(model, dataset).subset(n, seed)
    res = evaluate_under_attack(model, ds.texts, ds.labels, attack, json.loads(overrides_json),
                                             epsilons=list(epsilons), seed=seed)
    return [{k: r.get(k) for k in SCALARS if k in r} for r in res]


@st.cache_resource(max_entries=4, show_spinner="Loading the language model…")
def load_lm(path: str, mtime: float):
    return lm.load_lm(path)  # the library's loader (this cached one shares its name)


@st.cache_data(max_entries=32, show_spinner=False)
def perplexity_gap(key: tuple, lm_key: tuple, dataset: str, n: int, attack: str, overrides_json: str,
                   seed: int) -> dict:
    model = shared._load(*key)
    ds = shared.model_dataset(model, dataset).subset(n, seed)
    res = adversarial_perplexity(model, load_lm(*lm_key), ds.texts, ds.labels, attack,
                                              json.loads(overrides_json), seed=seed)
    return {k: v for k, v in res.items() if k != "examples"}


@st.cache_data(max_entries=32, show_spinner=False)
def significance(key_a: tuple, key_b: tuple, dataset: str, n: int, seed: int) -> dict:
    a, b = shared._load(*key_a), shared._load(*key_b)
    ds = shared.model_dataset(a, dataset).subset(n, seed)
    res = compare_models(a, b, ds.texts, ds.labels, seed=seed)
    return {k: v for k, v in res.items() if isinstance(v, (int, float, str, bool)) or v is None}


def curves(sel, n: int, eps: list[float]) -> pd.DataFrame | None:
    rows, bar = [], st.progress(0.0, text="attacking…")
    overrides = json.dumps(sel.overrides, sort_keys=True)
    for i, name in enumerate(sel.models):
        bar.progress(i / len(sel.models), text=f"{name}: {sel.attack} at ε = {', '.join(f'{e:g}' for e in eps)}")
        with shared.shown_errors(f"Attacking {name}"):
            key = shared.model_key(name)
            res = attack_curve(key, sel.dataset, n, sel.attack, overrides, tuple(eps), sel.seed)
            registry.record_eval(key[0], attacks=[{**r, "dataset": sel.dataset, "split": "dev"} for r in res])
            rows += [{"model": name, **r} for r in res]
    bar.empty()
    return pd.DataFrame(rows) if rows else None


def show_curves(df: pd.DataFrame, attack: str) -> None:
    st.plotly_chart(plots.accuracy_curves(df, attack), key="rob_curves", config={"displaylogo": False})
    st.markdown("**Original vs adversarial sentence representations** (mean cosine similarity and Euclidean "
                "distance, CARL/RAR Table 4) and the share of flipped predictions")
    st.dataframe(df, hide_index=True, key="rob_table",
                 column_config={c: st.column_config.NumberColumn(format="%.4f")
                                for c in ("clean_accuracy", "accuracy", "cosine", "euclidean", "flip_rate")})
    c1, c2 = st.columns(2)
    c1.download_button("Download (CSV)", df.to_csv(index=False), "robustness.csv", "text/csv", key="rob_dl_csv")
    c2.download_button("Download (JSON)", df.to_json(orient="records", indent=2), "robustness.json",
                       "application/json", key="rob_dl_json")


def discrete_section(sel) -> None:
    """TextAttack's table per model × recipe (TextDefender's columns), beside the curves above."""
    st.subheader("Discrete attacks (TextAttack)")
    missing = discrete.unavailable()
    if missing:
        st.info(missing, icon=":material/extension:")
        return
    c1, c2 = st.columns([3, 1])
    recipes = c1.multiselect("Recipes", discrete.recipes(), default=["deepwordbug"], key="rob_ta_recipes",
                             help=discrete.recipe_help())
    n = int(c2.number_input("Dev examples", 10, 2000, 100, step=50, key="rob_ta_n",
                            help="The first N of the same seeded subset as the curves."))
    st.caption(f"Each example is attacked against its gold label; skipped = already misclassified. Seed {sel.seed}. "
               "Results are cached and saved to each model's eval.json.")
    if st.button("Run TextAttack", key="rob_ta_go", disabled=not recipes):
        st.session_state["rob_ta_request"] = True
    if not st.session_state.get("rob_ta_request") or not recipes:
        return
    rows, done, pairs = [], {}, [(m, r) for m in sel.models for r in recipes]
    bar = st.progress(0.0, text="attacking…")
    for i, (name, recipe) in enumerate(pairs):
        bar.progress(i / len(pairs), text=f"{name}: textattack:{recipe} on {n} examples")
        with shared.shown_errors(f"textattack:{recipe} on {name}"):
            key = shared.model_key(name)
            res = discrete.run(key, sel.dataset, n, recipe, sel.seed)
            row = {k: res["row"].get(k) for k in discrete.SCALARS}
            registry.record_eval(key[0], attacks=[{**res["row"], "dataset": sel.dataset, "split": "dev"}])
            rows.append({"model": name, **row})
            done[(name, recipe)] = (key, res)
    bar.empty()
    if not rows:
        return
    df = pd.DataFrame(rows)
    st.plotly_chart(plots.discrete_bars(df), key="rob_ta_bars", config={"displaylogo": False})
    st.dataframe(df, hide_index=True, key="rob_ta_table",
                 column_config={**{c: st.column_config.NumberColumn(format="%.4f") for c in
                                   ("clean_accuracy", "accuracy", "attack_success_rate", "perturbed_word_share")},
                                "mean_queries": st.column_config.NumberColumn(format="%.1f"),
                                "examples_per_second": st.column_config.NumberColumn(format="%.2f"),
                                "seconds": st.column_config.NumberColumn(format="%.1f")})
    for r, v in discrete.variants(recipes).items():
        st.caption(f"`textattack:{r}` differs from the published recipe: {v}.")
    c1, c2, c3 = st.columns(3)
    c1.download_button("Download table (CSV)", df.to_csv(index=False), "textattack.csv", "text/csv", key="rob_ta_dl")
    pick = c2.selectbox("Adversarial examples of", list(done), key="rob_ta_pick", format_func=" · ".join)
    if pick:
        m, r = pick
        key, res = done[pick]
        c3.download_button("Successful examples (CSV for train --augment)", discrete.augment_csv(key, res),
                           f"adversarial-{m}-{r}.csv", "text/csv", key="rob_ta_aug")


def perplexity_section(sel, n: int) -> None:
    lms = registry.language_models(shared.models())
    if not lms:
        st.info(f"No language model under the models root. Train one with `advviz lm train --dataset "
                f"{sel.dataset or 'sst2-sent'} --out {shared.root()}/lm-{sel.dataset or 'sst2-sent'}`; it then "
                f"appears here.", icon=":material/inbox:")
        return
    lm = st.selectbox("Language model", [r["name"] for r in lms], key="rob_lm")
    if not st.button("Compute perplexity gaps", key="rob_ppl_go"):
        return
    rows = []
    for name in sel.models:
        with shared.shown_errors(f"Perplexity of {name}'s adversarial texts"), st.spinner(f"{name}…"):
            lm_path = registry.resolve(shared.root(), lm)
            res = perplexity_gap(shared.model_key(name), (str(lm_path), registry.fingerprint(lm_path)), sel.dataset,
                                 n, sel.attack, json.dumps(sel.overrides, sort_keys=True), sel.seed)
            rows.append({"model": name, **{k: v for k, v in res.items() if k != "overrides"}})
    if rows:
        df = pd.DataFrame(rows)
        st.dataframe(df, hide_index=True, key="rob_ppl_table")
        st.download_button("Download perplexity gaps (CSV)", df.to_csv(index=False), "perplexity.csv", "text/csv",
                           key="rob_ppl_dl")


def significance_section(sel, n: int) -> None:
    if len(sel.models) < 2:
        st.caption("Select two or more models in the sidebar to compare them pairwise.")
        return
    if not st.button("Compare models pairwise (clean dev accuracy)", key="rob_sig_go"):
        return
    rows = []
    for a, b in itertools.combinations(sel.models, 2):
        with shared.shown_errors(f"Comparing {a} and {b}"), st.spinner(f"{a} vs {b}…"):
            rows.append({"model_a": a, "model_b": b, **{k: v for k, v in significance(
                shared.model_key(a), shared.model_key(b), sel.dataset, n, sel.seed).items() if k not in ("model_a", "model_b")}})
    if rows:
        df = pd.DataFrame(rows)
        st.dataframe(df, hide_index=True, key="rob_sig_table")
        st.download_button("Download comparisons (CSV)", df.to_csv(index=False), "significance.csv", "text/csv",
                           key="rob_sig_dl")


def main() -> None:
    sel = sidebar.page_start("Robustness")
    if sel is None:
        return
    if not sel.dataset or not sel.attack:
        st.warning("A data set and an attack are needed (see the sidebar).")
        return
    c1, c2 = st.columns(2)
    eps_text = c1.text_input("ε values (comma-separated)",
                             value=", ".join(f"{e:g}" for e in default_epsilons(sel.attack, sel.overrides, sel.models,
                                                                                   shared.models())),
                             key=f"rob_eps_{sel.attack}",
                             help="Default: half, once and twice the sidebar's ε, else the ε a selected model was "
                                  "trained with under this attack, else the attack's default.")
    n = int(c2.number_input("Dev examples", 10, 5000, 200, step=50, key="rob_n"))
    try:
        eps = parse_epsilons(eps_text)
    except Exception as e:  # noqa: BLE001 - any parse failure is the user's input
        st.error(f"ε values: {e}")
        return
    st.caption(f"Attack **{sel.attack}** with the sidebar's parameters, on {n} examples of {sel.dataset}/dev "
               f"(seed {sel.seed}). Results are cached and saved to each model's eval.json.")
    if st.button("Compute curves", type="primary", key="rob_go"):
        st.session_state["rob_request"] = True
    if st.session_state.get("rob_request"):
        df = curves(sel, n, eps)
        if df is not None and not df.empty:
            show_curves(df, sel.attack)
    discrete_section(sel)
    with st.expander("Perplexity gaps (SPGD Table 1)"):
        perplexity_section(sel, n)
    with st.expander("Pairwise significance"):
        significance_section(sel, n)


main()
