"""Models page parts: the train-a-model form and the live panel of background jobs."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import streamlit as st

from advviz import background, registry
from advviz.config import PRESETS, RNN_ARCHS, flag_fields, flag_of
from advviz.methods import METHODS, resolve_method
from advviz.models import ModelOptions
from advviz.train import TrainConfig

from . import forms, shared

ARCHS = ["lstm", "bigru", "minilm"]


def _help(cls, name: str) -> str:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f"{f.metadata['help']} (`{flag_of(f)}`)"


def _train_values(method: str, arch: str) -> dict:
    """The TrainConfig / model widgets of the form (inside an st.form); every default is the
    dataclass field's (``advviz/config.py``), never a number written here."""
    T, M = TrainConfig, ModelOptions
    datasets = shared.available_datasets() or [T.dataset]
    c1, c2, c3 = st.columns(3)
    v = {"method": method, "arch": arch}
    v["dataset"] = c1.selectbox("Data set", datasets, index=datasets.index(T.dataset) if T.dataset in datasets else 0,
                                key="tr_dataset", help=_help(T, "dataset"))
    v["seed"] = int(c2.number_input("Seed", 0, 10_000, T.seed, key="tr_seed", help=_help(T, "seed")))
    v["epochs"] = int(c1.number_input("Epochs", 1, 50, T.epochs, key="tr_epochs", help=_help(T, "epochs")))
    n = int(c2.number_input("Train on N examples (0: all)", 0, 1_000_000, T.max_train or 0, step=500,
                            key="tr_max_train", help=_help(T, "max_train")))
    v["max_train"] = n or None
    s = int(c3.number_input("Stop after N steps (0: no limit)", 0, 1_000_000, T.max_steps or 0, step=50,
                            key="tr_max_steps", help=_help(T, "max_steps")))
    v["max_steps"] = s or None
    v["batch_size"] = int(c1.number_input("Batch size", 1, 512, T.batch_size, key="tr_batch",
                                          help=_help(T, "batch_size")))
    h = int(c2.number_input("RNN hidden size (0: the family's)", 0, 2048, M.hidden_size or 0, step=16,
                            key="tr_hidden", help=_help(M, "hidden_size")))
    v["hidden_size"] = (h or None) if v["arch"] in RNN_ARCHS else None  # a transformer has no such option
    e = int(c3.number_input("Evaluate on N dev examples (0: all)", 0, 100_000, T.max_eval or 0, step=100,
                            key="tr_max_eval", help=_help(T, "max_eval")))
    v["max_eval"] = e or None
    f = float(c1.number_input("Labelled share of the train set (1: all)", 0.01, 1.0, T.labeled_fraction or 1.0,
                              step=0.05, key="tr_labeled", help=_help(T, "labeled_fraction")))
    v["labeled_fraction"] = f if f < 1 else None  # the rest is unlabeled text for vat / uae
    return v


def _reset_method_widgets() -> None:
    """A new architecture or preset changes the method widgets' defaults: drop their old values."""
    for k in [k for k in st.session_state if str(k).startswith("trm_")]:
        del st.session_state[k]


def train_form() -> None:
    """Method, architecture and preset first (they decide the method widgets' defaults: the
    method's config after the family preset), then the rest in a form."""
    methods = list(METHODS)
    method = st.selectbox("Method", methods, key="tr_method", on_change=_reset_method_widgets,
                          help="Registered training methods; each one's hyperparameters appear below.")
    c1, c2 = st.columns(2)
    arch = c1.selectbox("Architecture", ARCHS, index=ARCHS.index(TrainConfig.arch), key="tr_arch",
                        on_change=_reset_method_widgets,
                        help="lstm: GloVe-50d LSTM; bigru: BiGRU; minilm: all-MiniLM-L6-v2 (slow on CPU)")
    preset = c2.selectbox("Method preset", list(PRESETS), index=list(PRESETS).index(TrainConfig.preset),
                          key="tr_preset", on_change=_reset_method_widgets, help=_help(TrainConfig, "preset"))
    cls = METHODS[method]
    if cls.paper:
        st.caption(cls.paper)
    with st.form("train_form"):
        values = {**_train_values(method, arch), "preset": preset}
        method_values = {}
        if flag_fields(cls.Config):
            st.markdown(f"**{method} hyperparameters** (defaults: the method's own after the {preset} preset "
                        f"for {arch})")
            defaults = resolve_method(method, arch, preset=preset)
            cols = st.columns(3)
            for i, f in enumerate(flag_fields(cls.Config)):
                method_values[f.name] = forms.widget(f, defaults[f.name], f"trm_{cls.Config.__name__}_{f.name}",
                                                     cols[i % 3])
        default_name = f"{arch}-{values['dataset']}-{method}-s{values['seed']}"
        name = st.text_input("Name (folder under the models root)", value="", placeholder=default_name,
                             key="tr_name")
        submitted = st.form_submit_button("Start training", type="primary")
    if submitted:
        _submit(name.strip() or default_name, values, method_values)


def _submit(name: str, values: dict, method_values: dict) -> None:
    """Start the run the form describes. Its configs are built once, here (``TrainRun.configs``:
    the one validation of every path that starts a run, which ``advviz train`` and background jobs
    call too); ``background.start`` is told they were checked instead of building them again."""
    run = background.TrainRun(name, values, method_values)
    with shared.shown_errors("Not started"):
        cfg, _, _ = run.configs(shared.root())
        path = Path(cfg.out)
        if path.exists():
            st.error(f"A model named '{name}' already exists; choose another name or delete it first.")
            return
        if background.resumable(path):
            st.error(f"A stopped run named '{name}' exists; resume it from its job card below, or choose "
                     f"another name.")
            return
        if name in background.running_names(shared.root()):
            st.error(f"'{name}' is being trained already.")
            return
        job = background.start(shared.root(), [run], checked=True)
        st.success(f"Training '{name}' started in the background (job {job}).")


def default_suite_button() -> None:
    suite = background.default_suite(shared.root())
    names = ", ".join(r.train["method"] for r in suite)
    st.markdown(f"**Default set:** GloVe-LSTM on sst2-sent, {len(suite)} methods ({names}), "
                f"{TrainConfig.epochs} epochs each (`advviz train`'s settings): a few minutes on CPU.")
    if st.button("Train the default set", type="primary", key="train_default"):
        with shared.shown_errors("Could not start the default training"):
            todo = [r for r in suite if not registry.is_checkpoint(registry.resolve(shared.root(), r.name))]
            if not todo:
                st.info("Every model of the default set exists already.")
                return
            jobs = background.start_parallel(shared.root(), todo)
            st.success(f"Default training started ({len(jobs)} job{'s' * (len(jobs) > 1)}, one per core: "
                       f"{', '.join(jobs)}); progress below.")


def _job_card(j: dict) -> None:
    label = f"**{j['current']}** ({j['done'] + (j['state'] == 'running')}/{j['n']})" if j["n"] > 1 else f"**{j['current']}**"
    icon = {"running": ":material/hourglass_top:", "done": ":material/check_circle:", "failed": ":material/error:",
            "cancelled": ":material/stop_circle:"}[j["state"]]
    with st.container(border=True):
        st.markdown(f"{icon} {label} — {j['state']}, started {time.strftime('%H:%M:%S', time.localtime(j['started']))}")
        if j["state"] == "running":
            frac = j["step"] / j["total"] if j["total"] else 0.0
            acc = f", last dev accuracy {j['dev_accuracy']:.3f}" if j["dev_accuracy"] is not None else ""
            st.progress(min(1.0, frac), text=f"step {j['step']}/{j['total'] or '?'}{acc}")
            if st.button("Cancel", key=f"cancel_{j['id']}"):
                background.cancel(shared.root(), j["id"])
                st.rerun()
        else:
            c1, c2 = st.columns([1, 6])
            if j["state"] in ("cancelled", "failed") and c1.button("Resume", key=f"resume_{j['id']}"):
                with shared.shown_errors("Could not resume"):
                    background.restart(shared.root(), j["id"])
                    background.forget(shared.root(), j["id"])
                    st.rerun()
            if c2.button("Dismiss", key=f"forget_{j['id']}"):
                with shared.shown_errors("Could not dismiss"):
                    background.forget(shared.root(), j["id"])
                st.rerun()
        with st.expander("log", expanded=j["state"] in ("running", "failed")):
            st.code(j["log_tail"] or "(no output yet)", language=None)


def jobs_panel() -> None:
    """Background jobs: redrawn every 2 s while one runs (a fragment: the rest of the page stays)."""
    jobs = background.jobs(shared.root())
    if any(j["state"] == "running" for j in jobs):
        _live_jobs()
    elif jobs:
        _draw_jobs(jobs)


def _draw_jobs(jobs: list[dict]) -> None:
    st.subheader("Training jobs")
    for j in jobs[:6]:
        _job_card(j)


@st.fragment(run_every=2)
def _live_jobs() -> None:
    jobs = background.jobs(shared.root())
    if not any(j["state"] == "running" for j in jobs):
        st.rerun()  # finished: redraw the whole page so the registry table lists the new model
    _draw_jobs(jobs)
