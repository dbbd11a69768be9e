"""Which words move: per-token ‖δᵢ‖ heatmaps for models × attacks, labelled ``moved_to (nearest)``;
and TextAttack's discrete adversarial examples opened on the same heatmap (the words it changed
outlined), with the split-level overlap of its swaps with the top-3 ‖δᵢ‖ tokens."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import streamlit as st

from advviz.analysis.inspection import inspect
from advviz.methods import attacks as attack_table
from advviz.storage.jsonio import dumps
from appkit import discrete, heatmaps, render, shared, sidebar, substitutions

EXAMPLE = "a charming and often affecting journey ."


@st.cache_data(max_entries=256, show_spinner=False)
def run_inspect(path: str, mtime: float, text: str, attack: str, overrides_json: str, seed: int) -> dict:
    model = shared._load(path, mtime)
    return inspect(model, [text], attack, json.loads(overrides_json), seed=seed)[0]


@st.cache_data(max_entries=16, show_spinner="Predicting the data set…")
def dataset_predictions(path: str, mtime: float, dataset: str) -> list[int]:
    model = shared._load(path, mtime)
    return model.predict(shared.get_dataset(dataset, "dev").texts).argmax(-1).tolist()


def pick_from_dataset(sel) -> str | None:
    """A dev sentence, filtered by label / misclassified / length, or drawn at random."""
    if not sel.dataset:
        st.warning("No data set is available (see the sidebar).")
        return None
    ds = shared.get_dataset(sel.dataset, "dev")
    lengths = np.array([len(t.split()) for t in ds.texts])
    c1, c2, c3 = st.columns([2, 2, 3])
    labels = c1.multiselect("Label", ds.label_names, default=ds.label_names, key="words_labels")
    wrong = c2.checkbox(f"misclassified by {sel.models[0]}", key="words_wrong")
    lo, hi = c3.slider("Length (words)", 1, int(lengths.max()), (1, min(30, int(lengths.max()))), key="words_len")
    keep = np.isin(np.array(ds.labels), [ds.label_names.index(lab) for lab in labels]) & (lengths >= lo) & (lengths <= hi)
    if wrong:
        preds = np.array(dataset_predictions(*shared.model_key(sel.models[0]), sel.dataset))
        keep &= preds != np.array(ds.labels)
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        st.warning("No sentence matches these filters.")
        return None
    options = idx[:500].tolist()
    key = f"words_choice_{hash((tuple(labels), wrong, lo, hi)) & 0xffff}"
    if st.button("Random sentence", icon=":material/casino:", key="words_random"):
        pick = int(np.random.default_rng().choice(idx))
        st.session_state["words_pick"] = pick
        st.session_state[key] = pick  # set the selectbox's own state (it ignores index= once it has one)
    pick = st.session_state.get("words_pick")
    if pick in idx and pick not in options:
        options.insert(0, pick)
    if st.session_state.get(key) not in options:
        st.session_state.pop(key, None)
    choice = st.selectbox(f"Sentence ({idx.size} match)", options, key=key,
                          format_func=lambda i: f"[{ds.label_names[ds.labels[i]]}] {ds.texts[i][:140]}")
    return ds.texts[choice]


def pick_from_upload() -> str | None:
    up = st.file_uploader("A .txt file, one sentence per line (≤ 1 MB)", type=["txt"], key="words_upload",
                          max_upload_size=1)
    lines, err = shared.read_upload(up)
    if err:
        st.error(err)
        return None
    if not lines:
        return None
    return st.selectbox(f"Sentence ({len(lines)} lines)", lines, key="words_upload_choice",
                        format_func=lambda s: s[:160])


def choose_text(sel) -> str | None:
    source = st.radio("Sentence from", ["typed", "data set", "uploaded file"], horizontal=True, key="words_source")
    if source == "data set":
        return pick_from_dataset(sel)
    if source == "uploaded file":
        return pick_from_upload()
    with st.form("words_form", border=False):
        text = st.text_area("Sentence", value=EXAMPLE, height=80, key="words_text", max_chars=100_000)
        st.form_submit_button("Show which words move", type="primary")
    return text


def compute(sel, text: str, attacks: list[str]) -> list[tuple[str, dict]]:
    """(row label, result) for every model × attack; a failing model shows its error and is skipped."""
    rows = []
    for name in sel.models:
        try:
            key = shared.model_key(name)
        except Exception as e:  # noqa: BLE001 - deleted meanwhile: say so, keep the others
            st.error(f"{name}: {e}")
            continue
        for attack in attacks:
            overrides = sel.overrides if attack == sel.attack else {}
            with shared.shown_errors(f"{name} × {attack}"):
                r = run_inspect(*key, text, attack, json.dumps(overrides, sort_keys=True), sel.seed)
                rows.append((f"{name} · {attack}", r))
    return rows


def show(rows: list[tuple[str, dict]]) -> None:
    heatmaps.token_heatmaps(rows, "words_heatmap")
    table = []
    for label, r in rows:
        names = r.get("label_names") or []
        table.append({"model · attack": label, "prediction": render.label_prob(r["pred"], r["probs"], names),
                      "after attack": render.label_prob(r["adv_pred"], r["adv_probs"], names),
                      "flipped": r["pred"] != r["adv_pred"], "probabilities before": render.probs_str(r["probs"], names),
                      "after": render.probs_str(r["adv_probs"], names)})
    st.dataframe(pd.DataFrame(table), hide_index=True, key="words_preds")
    st.markdown("**Discretized sentences** (each moved token replaced by the word it moved to)")
    for label, r in rows:
        toks = [t["token"] for t in r["tokens"]]
        st.markdown(f"`{label}` — {render.highlight_tokens(toks, [t['moved_to'] for t in r['tokens']])}",
                    unsafe_allow_html=True)
        if r.get("reconstructed_text"):
            st.markdown(f"&nbsp;&nbsp;RAR reconstruction — "
                        f"{render.highlight_tokens(toks, [t.get('reconstructed') for t in r['tokens']])}",
                        unsafe_allow_html=True)
    substitutions.weight_bars(rows)
    downloads(rows)


def downloads(rows: list[tuple[str, dict]]) -> None:
    flat = [{"model_attack": label, "model": r["model"], "attack": r["attack"].get("name"), **t}
            for label, r in rows for t in r["tokens"]]
    c1, c2 = st.columns(2)
    c1.download_button("Download tokens (CSV)", pd.DataFrame(flat).to_csv(index=False), "which_words_move.csv",
                       "text/csv", key="words_dl_csv")
    c2.download_button("Download results (JSON)", dumps([r for _, r in rows], indent=2),
                       "which_words_move.json", "application/json", key="words_dl_json")


def discrete_section(sel) -> None:
    st.subheader("Discrete adversarial examples (TextAttack)")
    st.caption("Where a discrete attack's edits land on the embedding adversary's heatmap: the words TextAttack "
               "changed, outlined on the per-token ‖δᵢ‖ of the original sentence under the sidebar's attack.")
    missing = discrete.unavailable()
    if missing:
        st.info(missing, icon=":material/extension:")
        return
    if not sel.dataset or not sel.attack:
        st.warning("A data set and an attack are needed (see the sidebar).")
        return
    c1, c2, c3 = st.columns([2, 2, 1])
    name = c1.selectbox("Model", sel.models, key="words_ta_model")
    recipe = c2.selectbox("Recipe", discrete.recipes(), key="words_ta_recipe", help=discrete.recipe_help())
    n = int(c3.number_input("Dev examples", 10, 1000, 50, step=10, key="words_ta_n"))
    if st.button("Run TextAttack and compare", key="words_ta_go"):
        st.session_state["words_ta_request"] = True
    if not st.session_state.get("words_ta_request"):
        return
    with shared.shown_errors(f"textattack:{recipe} on {name}"):
        key = shared.model_key(name)
        with st.spinner(f"textattack:{recipe} on {n} examples, then {sel.attack} on the successful ones…"):
            res = discrete.run(key, sel.dataset, n, recipe, sel.seed)
            ov = discrete.overlap(key, sel.dataset, n, recipe, sel.attack, json.dumps(sel.overrides, sort_keys=True),
                                  sel.seed)
        show_overlap(name, recipe, sel.attack, key, res, ov)


def show_overlap(name: str, recipe: str, attack: str, key, res: dict, ov: dict) -> None:
    row = res["row"]
    c = st.columns(4)
    c[0].metric("Swapped words among the top-3 ‖δᵢ‖", "–" if ov["share"] is None else f"{ov['share']:.1%}",
                help="Over the successful examples: the share of the words TextAttack changed that are among their "
                     f"sentence's three largest ‖δᵢ‖ under {attack}.")
    c[1].metric("By chance", "–" if ov["chance_share"] is None else f"{ov['chance_share']:.1%}",
                help="The same share for a word drawn uniformly from each sentence.")
    c[2].metric("Successful examples", f"{row['succeeded']} / {row['n']}",
                help=f"skipped (already wrong) {row['skipped']}, failed {row['failed']}")
    c[3].metric("Swapped words", ov["n_changed"])
    if not ov["examples"]:
        st.info(f"textattack:{recipe} flipped none of these {row['n']} examples.")
        return
    ex = st.selectbox(f"Adversarial example ({len(ov['examples'])})", ov["examples"], key="words_ta_example",
                      format_func=lambda e: f"#{e['index']}: {e['adversarial_text'][:140]}")
    st.markdown(f"original — {render.escape(ex['text'])}", unsafe_allow_html=True)
    st.markdown(f"textattack:{recipe} — {render.highlight_changes(ex['text'], ex['adversarial_text'])}",
                unsafe_allow_html=True)
    heatmaps.token_heatmaps([(f"{name} · {attack}", {"tokens": ex["tokens"], "changed": ex["changed"]})],
                            "words_ta_heatmap", caption=False)
    st.caption(f"Cell colour: ‖δᵢ‖ under {attack} on the original sentence; label: the word δᵢ points to. "
               "Outlined (⇒ word): a token of a word TextAttack changed, and what it changed it to.")
    st.download_button("Successful examples (CSV for advviz train --augment)", discrete.augment_csv(key, res),
                       f"adversarial-{name}-{recipe}.csv", "text/csv", key="words_ta_dl")


def main() -> None:
    sel = sidebar.page_start("Which words move", "Where the adversary spends its budget: ‖δᵢ‖ per token, and the "
                             "word each perturbation points to.")
    if sel is None:
        return
    sentence_part(sel)
    discrete_section(sel)


def sentence_part(sel) -> None:
    names = list(attack_table())
    default = [sel.attack] if sel.attack in names else names[:1]
    # the rows start as the sidebar's attack and follow it when it changes (a widget's default only
    # applies to its first run; after that its state would keep the old attack)
    if st.session_state.get("words_sidebar_attack") != sel.attack or "words_attacks" not in st.session_state:
        st.session_state["words_sidebar_attack"] = sel.attack
        st.session_state["words_attacks"] = default
    chosen = st.multiselect("Attacks (rows)", names, key="words_attacks", max_selections=6,
                            help="The sidebar's parameters apply to the sidebar attack; others use their defaults.")
    text = choose_text(sel)
    if text is None:
        return
    text, warning = shared.clean_text(text)
    if warning and not text:
        st.warning(warning)
        return
    if warning:
        st.warning(warning)
    if not chosen:
        st.info("Choose at least one attack.")
        return
    with st.spinner("Attacking…"):
        rows = compute(sel, text, chosen)
    if rows:
        show(rows)


main()
