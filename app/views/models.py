"""Models: the registry of the models root; train (background), evaluate, delete."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from advviz import registry
from advviz.analysis.robustness import default_epsilons, evaluate_under_attack
from advviz.storage.jsonio import dumps
from advviz.transfer import import_model
from appkit import plots, shared, sidebar, training

COLUMNS = {"name": "name", "arch": "arch", "method": "method", "source": "source", "dataset": "dataset",
           "training_data": "training data", "dev_accuracy": "dev acc",
           "ld_steps": "L_D steps", "note": "note", "clean_accuracy": "eval acc",
           "robustness": "robustness (attack ε: acc)", "parameters": "params",
           "train_seconds": "train s", "date": "date", "status": "status"}


def registry_table(rows: list[dict]) -> None:
    running = training.background.running_names(shared.root())
    df = pd.DataFrame(rows)[list(COLUMNS)].rename(columns=COLUMNS)
    df.loc[df["name"].isin(running), "status"] = "training…"
    st.dataframe(df, hide_index=True, key="registry_table",
                 column_config={"dev acc": st.column_config.NumberColumn(format="%.3f"),
                                "eval acc": st.column_config.NumberColumn(format="%.3f"),
                                "params": st.column_config.NumberColumn(format="localized"),
                                "L_D steps": st.column_config.NumberColumn(
                                    help="CARL: optimiser steps trained with the contrastive loss L_D"),
                                "training data": st.column_config.TextColumn(
                                    help="beyond the labelled train split: the labelled share, unlabeled texts "
                                         "(--labeled-fraction, --unlabeled) and --augment rows"),
                                "train s": st.column_config.NumberColumn(format="%.1f"),
                                "source": st.column_config.TextColumn(
                                    help="advviz import: the Hugging Face folder or hub id the model came from")})
    st.download_button("Download registry (CSV)", df.to_csv(index=False), "models.csv", "text/csv", key="dl_registry")


def evaluate_panel(name: str, row: dict) -> None:
    if row["status"] != "ok":
        st.info(f"{name} is not a classifier checkpoint ({row['status']}); only classifiers are evaluated here.")
        return
    sel = sidebar.selection()
    c1, c2 = st.columns(2)
    n = int(c1.number_input("Dev examples (0: all)", 0, 100_000, 500, step=100, key="ev_n"))
    with_attack = c2.checkbox(f"also under the sidebar attack ({sel.attack or 'none'})", key="ev_attack",
                              value=False, disabled=sel.attack is None)
    if not st.button("Evaluate", key="ev_go", type="primary"):
        return
    with shared.shown_errors(f"Evaluating {name}"):
        model = shared.get_model(name)
        dataset = row["dataset"] or sel.dataset
        with st.spinner(f"Evaluating {name} on {dataset}/dev…"):
            res = model.evaluate(dataset, "dev", n or None)
        clean = {"dataset": dataset, "split": "dev", **res}
        attacks = None
        if with_attack:
            ds = shared.model_dataset(model, dataset).subset(n or None, sel.seed)
            with st.spinner(f"Attacking with {sel.attack}…"):
                # the ε grid of `advviz eval --attack` and the Robustness page (0.5x, 1x, 2x), not one ε
                eps = default_epsilons(sel.attack, sel.overrides, [name], [row])
                attacks = evaluate_under_attack(model, ds.texts, ds.labels, sel.attack, sel.overrides, eps,
                                                seed=sel.seed)
        registry.record_eval(registry.resolve(shared.root(), name), clean, attacks)
        st.success(f"{dataset}/dev: accuracy {res['accuracy']:.4f}, macro-F1 {res['macro_f1']:.4f} (n {res['n']}); "
                   f"saved to eval.json")
        if attacks:
            st.dataframe(pd.DataFrame(attacks).drop(columns=["per_example"], errors="ignore"), hide_index=True)


def delete_panel(name: str) -> None:
    st.warning(f"Deleting removes the folder `{name}` and everything in it.")
    confirm = st.checkbox(f"Yes, delete {name}", key=f"del_confirm_{name}")
    if st.button("Delete", key="del_go", disabled=not confirm):
        with shared.shown_errors(f"Deleting {name}"):
            if name in training.background.running_names(shared.root()):
                st.error("It is being trained; cancel the job first.")
                return
            registry.delete(shared.root(), name)
            _load_clear()
            st.success(f"Deleted {name}.")
            st.rerun()


def import_form() -> None:
    """``advviz import`` of a local folder into the models root (advviz.transfer does the work)."""
    st.caption("A folder written by `save_pretrained` for any `AutoModelForSequenceClassification`, with its "
               "tokenizer. The model is used as it is (its own head); the folder is never modified.")
    c1, c2, c3 = st.columns([3, 2, 2])
    src = c1.text_input("Folder", key="imp_src", placeholder="/path/to/my-finetuned-model")
    name = c2.text_input("Name", key="imp_name", placeholder="my-model")
    dataset = c3.text_input("Data set (optional)", key="imp_dataset", placeholder="sst2-sent")
    done = st.session_state.pop("imp_done", None)
    if done:
        st.success(done)
    if st.button("Import", key="imp_go", disabled=not (src.strip() and name.strip())):
        with shared.shown_errors(f"Importing {src}"):
            out = import_model(src.strip(), shared.root() / registry.check_name(name.strip()), dataset.strip() or None)
            st.session_state["imp_done"] = f"Imported {src} as {out.name}."
        if "imp_done" in st.session_state:
            st.rerun()  # the registry table above lists it


def _load_clear() -> None:
    shared._load.clear()


def details(rows: list[dict]) -> None:
    names = [r["name"] for r in rows]
    first_ok = next((i for i, r in enumerate(rows) if r["status"] == "ok"), 0)
    name = st.selectbox("Model", names, index=first_ok, key="models_detail")
    row = next(r for r in rows if r["name"] == name)
    tab_log, tab_cfg, tab_eval, tab_del = st.tabs(["Training curve", "Config & metrics", "Evaluate", "Delete"])
    with tab_log:
        log = registry.train_log(shared.root(), name)
        evals = [ln for ln in log if "dev_accuracy" in ln]
        steps = [ln for ln in log if "loss" in ln]
        if not log:
            st.caption("No train_log.jsonl lines.")
        c1, c2 = st.columns(2)
        if steps:
            c1.plotly_chart(plots.train_curve(pd.DataFrame(steps), "loss", "training loss"), key="curve_loss")
        if evals:
            c2.plotly_chart(plots.train_curve(pd.DataFrame(evals), "dev_accuracy", "dev accuracy"), key="curve_dev")
    with tab_cfg:
        cfg = registry.read_json(shared.root(), name, "config.json") or {}
        metrics = registry.read_json(shared.root(), name, "metrics.json") or {}
        c1, c2 = st.columns(2)
        c1.json({k: cfg.get(k) for k in ("method", "train", "model", "data") if k in cfg}, expanded=1)
        c2.json(metrics, expanded=True)
        ev = registry.read_json(shared.root(), name, "eval.json")
        if ev:
            c2.json(ev, expanded=False)
        st.download_button("Download config + metrics (JSON)", dumps({"config": cfg, "metrics": metrics,
                                                                          "eval": ev}, indent=2),
                           f"{name.replace('/', '_')}.json", "application/json", key="dl_model_json")
    with tab_eval:
        evaluate_panel(name, row)
    with tab_del:
        delete_panel(name)


def main() -> None:
    st.title("Models")
    rows = shared.models()
    if not any(r["status"] == "ok" for r in rows):
        st.info(f"No trained model under `{shared.root()}` yet. Train the default set below (it is what "
                f"`advviz app` trains on first start), or a model of your choice.", icon=":material/inbox:")
        training.default_suite_button()
    else:
        registry_table(rows)
    training.jobs_panel()
    with st.expander("Import a Hugging Face model"):
        import_form()
    with st.expander("Train a new model", expanded=not rows):
        training.train_form()
        if rows:
            st.divider()
            training.default_suite_button()
    if rows:
        st.subheader("Model details")
        details(rows)


main()
