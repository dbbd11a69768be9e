"""The Streamlit app under AppTest: every page, its empty states and main interactions, on tiny
real checkpoints (a baseline and a RAR GloVe-LSTM trained for a few steps on sst2-sent)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from advviz import registry
from advviz.errors import AdvvizError

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "app" / "streamlit_app.py"
PAGES = ["models", "sentence", "atlas", "reconstructions", "space", "robustness"]
TINY = {"dataset": "sst2-sent", "arch": "lstm", "max_train": 300, "max_eval": 100, "max_steps": 4, "log_every": 2}


def build_models_root(root: Path) -> Path:
    """ROOT/tiny-baseline and ROOT/tiny-rar: real checkpoints, seconds on CPU (needs the data)."""
    from advviz.methods import METHODS, build_method
    from advviz.models import ModelOptions
    from advviz.train import TrainConfig, Trainer

    root.mkdir(parents=True, exist_ok=True)
    opts = ModelOptions(hidden_size=16)
    for method in ("baseline", "rar"):
        if method not in METHODS:
            continue
        cfg = TrainConfig(**TINY, method=method, out=str(root / f"tiny-{method}"))
        Trainer(cfg, build_method(method), opts, progress=False).fit()
    try:  # a small language model for the perplexity gaps (analysis work)
        from advviz.analysis.lm import LMConfig, LMTrainConfig, train_lm
    except ImportError:
        return root
    train_lm("sst2-sent", root / "lm-tiny", LMTrainConfig(epochs=1, max_train=200),
             LMConfig(embedding_dim=16, hidden_size=16), progress=False)
    return root


@pytest.fixture(scope="session")
def models_root(tmp_path_factory, data_dir) -> Path:
    return build_models_root(tmp_path_factory.mktemp("models"))


@pytest.fixture
def app_env(models_root, monkeypatch):
    monkeypatch.setenv("ADVVIZ_MODELS_DIR", str(models_root))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return models_root


def new_app(page: str | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=120).run()
    if page:
        at.switch_page(f"views/{page}.py").run()
    return at


def assert_clean(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


# -------------------------------------------------------------------------------- registry


def test_registry_scan_and_path_safety(models_root, tmp_path):
    rows = {r["name"]: r for r in registry.scan(models_root)}
    assert rows["tiny-baseline"]["method"] == "baseline" and rows["tiny-baseline"]["arch"] == "lstm"
    assert rows["tiny-baseline"]["dataset"] == "sst2-sent" and rows["tiny-baseline"]["parameters"] > 0
    for bad in ("..", "../x", "/etc", "a/b/c", "a/../..", ".jobs", "g/.hidden", ""):
        with pytest.raises(AdvvizError):
            registry.resolve(models_root, bad)
    outside = tmp_path / "outside"
    outside.mkdir()
    link = models_root / "escape"
    link.symlink_to(outside)
    try:
        with pytest.raises(AdvvizError):
            registry.resolve(models_root, "escape")
        assert "escape" not in {r["name"] for r in registry.scan(models_root)}
    finally:
        link.unlink()


def test_registry_finds_grouped_checkpoints(models_root):
    group = models_root / "zz-group"
    shutil.copytree(models_root / "tiny-baseline", group / "inner")
    try:
        names = [r["name"] for r in registry.scan(models_root)]
        assert "zz-group/inner" in names and "zz-group" not in names
        assert registry.resolve(models_root, "zz-group/inner") == group / "inner"
        assert registry.load(models_root, "zz-group/inner").label_names == ["negative", "positive"]
    finally:
        shutil.rmtree(group)


def test_record_eval_shows_robustness(tmp_path, models_root):
    d = tmp_path / "m"
    shutil.copytree(models_root / "tiny-baseline", d)
    registry.record_eval(d, {"accuracy": 0.5}, [{"name": "spgd", "epsilon": 1.0, "accuracy": 0.25, "per_example": []}])
    row = registry.describe(d)
    assert row["clean_accuracy"] == 0.5 and row["robustness"] == "spgd ε=1: 0.250"


# -------------------------------------------------------------------------------- pages


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(app_env, page):
    at = new_app(page)
    assert_clean(at)
    assert at.title, "each page has a title"
    assert at.multiselect(key="sb_models").value == ["tiny-baseline"]  # the shared sidebar


def test_empty_root_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVVIZ_MODELS_DIR", str(tmp_path))
    for page in PAGES:
        at = new_app(page)
        assert_clean(at)
        assert any("No trained model" in i.value for i in at.info), page
    at = new_app("models")
    assert at.button(key="train_default")


def test_models_page_evaluates_on_the_eval_eps_grid(app_env):
    """Evaluate under the sidebar attack uses the ε grid of ``advviz eval --attack`` and the
    Robustness page (robustness.default_epsilons: 0.5x, 1x, 2x), not one ε."""
    from advviz.analysis.robustness import EPSILON_FACTORS

    at = new_app("models")
    at.number_input(key="ev_n").set_value(8)
    at.checkbox(key="ev_attack").check()
    at.button(key="ev_go").click().run()
    assert_clean(at)
    assert len(at.dataframe[-1].value) == len(EPSILON_FACTORS)


def test_models_page_table_evaluate_delete(app_env, tmp_path):
    at = new_app("models")
    table = at.dataframe[0].value
    assert {"tiny-baseline", "tiny-rar"} <= set(table["name"])
    assert set(table.loc[table["name"] == "lm-tiny", "status"]) <= {"language model"}
    at.number_input(key="ev_n").set_value(50)
    at.button(key="ev_go").click().run()
    assert_clean(at)
    assert any("saved to eval.json" in s.value for s in at.success)
    assert (app_env / "tiny-baseline" / "eval.json").is_file()
    # delete needs the confirmation first; delete a copy so other tests keep their models
    shutil.copytree(app_env / "tiny-baseline", app_env / "zz-copy")
    at = new_app("models")
    at.selectbox(key="models_detail").set_value("zz-copy").run()
    assert at.button(key="del_go").disabled
    at.checkbox(key="del_confirm_zz-copy").check().run()
    at.button(key="del_go").click().run()
    assert not (app_env / "zz-copy").exists()
    assert_clean(at)


def test_models_page_training_form_generated_from_config(app_env):
    from advviz.methods import METHODS

    at = new_app("models")
    at.selectbox(key="tr_method").set_value("freelb").run()
    cfg = METHODS["freelb"].Config()
    assert at.number_input(key="trm_FreeLBConfig_steps").value == cfg.steps
    assert at.checkbox(key="trm_FreeLBConfig_clean_loss").value == cfg.clean_loss
    at.text_input(key="tr_name").input("../escape")
    [b for b in at.button if b.label == "Start training"][0].click().run()
    assert any("not a valid model name" in e.value for e in at.error)  # path outside the root refused
    assert not at.exception


def test_models_page_form_starts_background_training(app_env):
    import time

    from advviz import background

    at = new_app("models")
    at.selectbox(key="tr_method").set_value("freelb").run()
    for key, value in (("tr_max_train", 300), ("tr_max_steps", 2), ("tr_hidden", 16), ("tr_max_eval", 50)):
        at.number_input(key=key).set_value(value)
    at.number_input(key="trm_FreeLBConfig_steps").set_value(1)
    at.text_input(key="tr_name").input("zz-form")
    [b for b in at.button if b.label == "Start training"][0].click().run()
    assert_clean(at)
    assert any("started in the background" in s.value for s in at.success)
    job = background.jobs(app_env)[0]
    try:
        for _ in range(360):
            if background.status(app_env, job["id"])["state"] != "running":
                break
            time.sleep(0.5)
        st = background.status(app_env, job["id"])
        assert st["state"] == "done", (st["state"], st["log_tail"])
        cfg = registry.read_json(app_env, "zz-form", "config.json")
        assert cfg["method"]["steps"] == 1 and cfg["model"]["hidden_size"] == 16  # the widgets reached the CLI
        at = new_app("models")
        assert_clean(at)
        assert "zz-form" in set(at.dataframe[0].value["name"])
    finally:
        if background.status(app_env, job["id"])["state"] == "running":
            background.cancel(app_env, job["id"])
        background.forget(app_env, job["id"])
        shutil.rmtree(app_env / "zz-form", ignore_errors=True)


def test_words_page_heatmap_and_bad_input(app_env):
    at = new_app("sentence")
    assert_clean(at)
    assert len(at.get("plotly_chart")) == 1
    preds = at.dataframe[0].value
    assert preds.shape[0] == 1 and {"prediction", "after attack"} <= set(preds.columns)
    at.multiselect(key="words_attacks").set_value(["spgd", "pgd"]).run()
    assert at.dataframe[0].value.shape[0] == 2
    at.selectbox(key="sb_attack").set_value("fgsm").run()  # the rows follow the sidebar's attack
    assert at.multiselect(key="words_attacks").value == ["fgsm"]
    at.multiselect(key="words_attacks").set_value(["fgsm", "pgd"]).run()  # and stay as chosen until it changes
    assert at.multiselect(key="words_attacks").value == ["fgsm", "pgd"]
    at.text_area(key="words_text").input("   ")
    at.button[0].click().run()
    assert any("Type a sentence" in w.value for w in at.warning)
    at.text_area(key="words_text").input("good " * 10_000)
    at.button[0].click().run()
    assert any("10,000 words" in w.value for w in at.warning)
    assert_clean(at)
    at.radio(key="words_source").set_value("data set").run()
    assert_clean(at)
    first = at.selectbox[0].value
    for _ in range(5):  # a random draw picks another sentence (almost surely within 5 draws)
        at.button(key="words_random").click().run()
        if at.selectbox[0].value != first:
            break
    assert at.selectbox[0].value != first
    at.checkbox(key="words_wrong").check().run()
    assert_clean(at)


def test_atlas_page_table_sentences_comparison_and_cache(app_env):
    at = new_app("atlas")
    assert_clean(at)
    assert at.title[0].value == "Word atlas"
    at.number_input(key="atlas_n_sst2-sent_dev").set_value(150).run()
    assert any("Compute the atlas" in i.value for i in at.info)  # nothing runs before the button
    at.button(key="atlas_go").click().run()
    assert_clean(at)
    summary, table = at.dataframe[0].value, at.dataframe[1].value
    assert summary["model"].tolist() == ["tiny-baseline"] and summary["sentences"].tolist() == [150]
    assert summary["source"].tolist() == ["computed"]
    assert {"word", "count", "mean_norm", "top_share", "moved_to", "saliency", "frequency",
            "flip_share"} <= set(table.columns)
    assert (table["count"] >= 3).all()  # the default minimum count
    scores = (table["mean_norm"] * table["count"]).tolist()
    assert scores == sorted(scores, reverse=True)
    assert len(at.get("plotly_chart")) == 2  # the scatter and the moved_to bars
    word = table["word"].iloc[0]
    at.selectbox(key="atlas_word").set_value(word).run()
    assert_clean(at)
    assert len(at.get("plotly_chart")) > 2  # one heatmap per listed sentence
    assert any(f"“{word}”** occurs in" in m.value for m in at.markdown)
    at.text_input(key="atlas_search").input("zzzz-no-such-word").run()
    assert any("No word matches" in i.value for i in at.info)
    at.text_input(key="atlas_search").input("").run()
    at.selectbox(key="atlas_sort").set_value("count").run()
    counts = at.dataframe[1].value["count"].tolist()
    assert counts == sorted(counts, reverse=True)
    # a second model: a comparison with the per-word differences
    at.multiselect(key="sb_models").set_value(["tiny-baseline", "tiny-rar"]).run()
    at.button(key="atlas_go").click().run()
    assert_clean(at)
    assert at.dataframe[0].value["model"].tolist() == ["tiny-baseline", "tiny-rar"]
    assert {"delta_mean_norm", "delta_top_share"} <= set(at.dataframe[1].value.columns)
    at.radio(key="atlas_mode").set_value("both").run()
    assert_clean(at)
    # a new session with the same settings is served from the cache (no button, no attack)
    at2 = new_app("atlas")
    at2.number_input(key="atlas_n_sst2-sent_dev").set_value(150).run()
    assert_clean(at2)
    assert not [b for b in at2.button if b.key == "atlas_go"]
    assert at2.dataframe[0].value["source"].tolist() in (["computed"], ["disk cache"])  # this server's, or disk
    assert list((app_env / "tiny-baseline" / "cache").glob("words-*.safetensors"))


def test_atlas_page_bad_settings_are_one_error_and_the_page_stays(app_env):
    at = new_app("atlas")
    at.number_input(key="atlas_n_sst2-sent_dev").set_value(40).run()
    at.number_input(key="sb_spgd_lstm_k").set_value(100_000).run()  # past --k's maximum (limits.MAXIMA)
    at.button(key="atlas_go").click().run()
    assert not at.exception
    assert any("more than its maximum 1,000" in e.value for e in at.error), [e.value for e in at.error]
    assert at.number_input(key="atlas_min_count")  # the page is still there
    at.number_input(key="sb_spgd_lstm_k").set_value(15).run()
    if any(b.key == "atlas_go" for b in at.button):  # (the sidebar ran the defaults, k 15, meanwhile)
        at.button(key="atlas_go").click().run()
    assert_clean(at)
    assert at.dataframe[1].value.shape[0] > 0


def test_model_deleted_meanwhile_keeps_app_working(app_env):
    shutil.copytree(app_env / "tiny-baseline", app_env / "zz-gone")
    at = new_app("sentence")
    at.multiselect(key="sb_models").set_value(["zz-gone", "tiny-baseline"]).run()
    (app_env / "zz-gone" / "model.safetensors").unlink()
    at.run()
    assert not at.exception
    assert any("zz-gone" in m.value for m in [*at.error, *at.warning])  # said, not a traceback
    assert at.dataframe[0].value.shape[0] == 1  # the other model still shown
    shutil.rmtree(app_env / "zz-gone")
    at.run()
    assert_clean(at)


def test_reconstructions_page(app_env):
    at = new_app("reconstructions")
    assert_clean(at)
    if "rar" not in {r["method"] for r in registry.scan(app_env)}:
        assert any("No RAR model" in i.value for i in at.info)
        return
    assert at.selectbox(key="rec_model").value == "tiny-rar"
    assert any("Reconstructed" in m.value for m in at.markdown)
    at.number_input(key="rec_n").set_value(16)
    at.button(key="rec_go").click().run()
    assert_clean(at)
    df = at.dataframe[-1].value
    assert len(df) == 16 and {"text", "reconstructed_text", "judge_pred"} <= set(df.columns)
    at.checkbox(key="rec_only_flips").check().run()
    assert_clean(at)


def test_space_page_pca(app_env):
    at = new_app()
    at.multiselect(key="sb_models").set_value(["tiny-baseline", "tiny-rar"]).run()
    at.switch_page("views/space.py").run()
    at.number_input(key="space_n").set_value(40).run()
    assert_clean(at)
    assert len(at.get("plotly_chart")) == 2  # two models side by side


def test_robustness_page_curves(app_env):
    at = new_app("robustness")
    at.number_input(key="rob_n").set_value(20)
    at.text_input(key="rob_eps_spgd").input("abc").run()
    assert any("ε values" in e.value for e in at.error)
    at.text_input(key="rob_eps_spgd").input("0.5, 1").run()
    at.button(key="rob_go").click().run()
    assert_clean(at)
    assert len(at.get("plotly_chart")) == 1
    table = at.dataframe[0].value
    assert table["epsilon"].tolist() == [0.5, 1.0]
    assert table["clean_accuracy"].nunique() == 1  # the same examples at every ε


def test_default_eps_follows_the_training_eps_of_a_selected_model():
    from advviz.analysis.robustness import default_epsilons

    rows = [{"name": "a", "method": "freelb", "epsilon": 0.0, "arch": "lstm"},
            {"name": "b", "method": "spgd", "epsilon": 2.0, "arch": "lstm"},
            {"name": "m", "method": "baseline", "arch": "minilm"}]
    assert default_epsilons("spgd", {}, ["a", "b"], rows) == [1.0, 2.0, 4.0]  # b was trained with SPGD at ε 2
    assert default_epsilons("spgd", {}, ["a"], rows) == [1.0, 2.0, 4.0]  # the lstm preset, not the paper's 25
    assert default_epsilons("spgd", {}, ["m"], rows) == [0.35, 0.7, 1.4]  # the transformer preset
    assert default_epsilons("spgd", {"epsilon": 1.0}, ["b"], rows) == [0.5, 1.0, 2.0]  # the user's ε wins
    assert default_epsilons("pgd", {}, ["a"], rows) == [0.05, 0.1, 0.2]  # no preset: the attack's own


def test_sidebar_attack_widgets_start_at_the_family_preset_and_pass_only_changes(app_env):
    at = new_app("sentence")
    assert at.number_input(key="sb_spgd_lstm_epsilon").value == 2.0  # tiny-baseline is a GloVe LSTM
    assert at.session_state["selection"].overrides == {}  # untouched: each model's own family preset applies
    at.number_input(key="sb_spgd_lstm_k").set_value(5).run()
    assert at.session_state["selection"].overrides == {"k": 5}
    assert_clean(at)


def test_accuracy_curve_starts_at_clean_accuracy():
    import sys

    import pandas as pd

    sys.path.insert(0, str(REPO / "app"))
    from appkit import plots

    df = pd.DataFrame({"model": ["a", "a", "b"], "epsilon": [1.0, 0.5, 0.5], "accuracy": [0.2, 0.4, 0.6],
                       "clean_accuracy": [0.8, 0.8, 0.9]})
    fig = plots.accuracy_curves(df, "pgd")
    assert [list(t.x) for t in fig.data] == [[0.0, 0.5, 1.0], [0.0, 0.5]]
    assert [list(t.y) for t in fig.data] == [[0.8, 0.4, 0.2], [0.9, 0.6]]
    no_clean = plots.accuracy_curves(df.drop(columns="clean_accuracy"), "pgd")
    assert list(no_clean.data[0].x) == [0.5, 1.0]


def test_robustness_perplexity_and_significance(app_env):
    at = new_app()
    at.multiselect(key="sb_models").set_value(["tiny-baseline", "tiny-rar"]).run()
    at.switch_page("views/robustness.py").run()
    at.number_input(key="rob_n").set_value(16).run()
    at.button(key="rob_sig_go").click().run()
    assert_clean(at)
    sig = at.dataframe[-1].value
    assert sig[["model_a", "model_b"]].values.tolist() == [["tiny-baseline", "tiny-rar"]] and "p" in sig
    if registry.language_models(registry.scan(app_env)):
        at.button(key="rob_ppl_go").click().run()
        assert_clean(at)
        ppl = at.dataframe[-1].value
        assert ppl["model"].tolist() == ["tiny-baseline", "tiny-rar"] and "gap" in ppl


def test_upload_rejects_binary_and_big_files():
    import sys

    sys.path.insert(0, str(REPO / "app"))
    from appkit import shared

    class Up:
        def __init__(self, name, data):
            self.name, self._d = name, data

        def getvalue(self):
            return self._d

    assert shared.read_upload(Up("a.txt", b"one\n\ntwo\n")) == (["one", "two"], None)
    assert "binary" in shared.read_upload(Up("a.txt", b"\x89PNG\x00\x00"))[1]
    assert "not UTF-8" in shared.read_upload(Up("a.txt", b"\xff\xfe\xfa"))[1]
    assert "limit" in shared.read_upload(Up("a.txt", b"x" * (shared.MAX_UPLOAD_BYTES + 1)))[1]


def test_background_training_job(app_env):
    import time

    from advviz import background

    job = background.start(app_env, [background.TrainRun("zz-bg", {**TINY, "method": "baseline", "hidden_size": 8})])
    try:
        for _ in range(360):  # generous: CI machines may be busy
            st = background.status(app_env, job)
            if st["state"] != "running":
                break
            time.sleep(0.5)
        assert st["state"] == "done", (st["state"], st["log_tail"])
        assert registry.is_checkpoint(app_env / "zz-bg")
    finally:
        if background.status(app_env, job)["state"] == "running":
            background.cancel(app_env, job)
        background.forget(app_env, job)
        shutil.rmtree(app_env / "zz-bg", ignore_errors=True)


def test_background_cancel_and_resume(app_env):
    import json
    import time

    from advviz import background

    run = background.TrainRun("zz-cancel", {**TINY, "method": "baseline", "max_steps": 100000, "max_train": None,
                                            "epochs": 50, "hidden_size": 8})
    job = background.start(app_env, [run])
    jobs = [job]
    try:
        for _ in range(360):  # until training has started (the bar shows a step)
            if background.status(app_env, job)["step"] > 0:
                break
            time.sleep(0.5)
        pid = int((app_env / ".jobs" / job / "pid").read_text())
        background.cancel(app_env, job)
        assert background.status(app_env, job)["state"] == "cancelled"
        with pytest.raises(ProcessLookupError):  # the runner and its train process are gone
            os.killpg(pid, 0)
        if background.resumable(app_env / "zz-cancel"):  # train saved its state on SIGTERM
            again = background.restart(app_env, job)
            jobs.append(again)
            for _ in range(360):  # the restarted run resumes from the saved state, not from step 0
                if "--resume" in background.status(app_env, again)["log_tail"]:
                    break
                time.sleep(0.5)
            assert "--resume" in background.status(app_env, again)["log_tail"]
            background.cancel(app_env, again)
    finally:
        for j in jobs:
            background.cancel(app_env, j)
            background.forget(app_env, j)
        shutil.rmtree(app_env / "zz-cancel", ignore_errors=True)
        shutil.rmtree(app_env / ".zz-cancel.resume", ignore_errors=True)
    assert os.environ["ADVVIZ_MODELS_DIR"] == str(app_env)


# -------------------------------------------------------------------------------- hostile models root (issue 12)

SECRET = 0.123456789


def _deep(path: Path) -> None:
    path.write_text("[" * 100_000 + "]" * 100_000)


def _fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def _link(path: Path, target) -> None:
    path.unlink(missing_ok=True)
    path.symlink_to(target)


HOSTILE_ROOT = {
    "metrics.json is a list": lambda d: (d / "metrics.json").write_text("[1, 2]"),
    "metrics.json nested 100,000 deep": lambda d: _deep(d / "metrics.json"),
    "config.json nested 100,000 deep": lambda d: _deep(d / "config.json"),
    "metrics.json is a FIFO": lambda d: _fifo(d / "metrics.json"),
    "config.json is a FIFO": lambda d: _fifo(d / "config.json"),
    "metrics.json -> /dev/zero": lambda d: _link(d / "metrics.json", "/dev/zero"),
    "eval.json -> a file outside the root": lambda d: _link(d / "eval.json", d.parent.parent / "secret.json"),
    "config.json of 40 MB": lambda d: (d / "config.json").write_text('{"pad": "' + "x" * (40 << 20) + '"}'),
    "eval.json with a string accuracy": lambda d: (d / "eval.json").write_text('{"clean": {"accuracy": "high"}, '
                                                                                '"attacks": [{"accuracy": "x"}]}'),
}


TOLERATED = {"eval.json with a string accuracy"}


def _hostile_root(tmp_path: Path, case: str) -> Path:
    from advviz.storage.checkpoint import save_checkpoint
    from conftest import make_tiny_rnn

    (tmp_path / "secret.json").write_text(json.dumps({"clean": {"accuracy": SECRET}}))
    root = tmp_path / "root"
    run = {"data": {"name": "sst2-sent", "label_names": ["negative", "positive"]}, "method": {"name": "baseline"}}
    save_checkpoint(root / "good", make_tiny_rnn(), run, {"dev_accuracy": 0.5})
    save_checkpoint(root / "bad", make_tiny_rnn(), run, {"dev_accuracy": 0.5})
    HOSTILE_ROOT[case](root / "bad")
    return root


def _in_thread(fn, timeout=60):
    """fn() with a deadline: a scan that hangs (a FIFO) fails the test instead of blocking it."""
    import threading

    out = {}
    t = threading.Thread(target=lambda: out.update(v=fn()), daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "hung"
    return out["v"]


@pytest.mark.parametrize("case", list(HOSTILE_ROOT))
def test_registry_scan_survives_a_hostile_checkpoint(tmp_path, case):
    root = _hostile_root(tmp_path, case)
    rows = {r["name"]: r for r in _in_thread(lambda: registry.scan(root))}
    assert rows["good"]["status"] == "ok" and rows["good"]["dev_accuracy"] == 0.5
    if case in TOLERATED:  # read, the unusable values left out
        assert rows["bad"]["status"] == "ok" and rows["bad"]["clean_accuracy"] is None
    else:
        assert rows["bad"]["status"].startswith("unreadable: "), rows["bad"]
    assert str(SECRET) not in json.dumps(rows, default=str)
    for f in ("config.json", "metrics.json", "eval.json"):
        v = _in_thread(lambda: registry.read_json(root, "bad", f))
        assert v is None or (isinstance(v, dict) and str(SECRET) not in json.dumps(v))


def test_registry_scan_has_a_time_budget(tmp_path, monkeypatch):
    root = _hostile_root(tmp_path, "metrics.json is a list")
    clock = iter(range(0, 10_000, 100))
    monkeypatch.setattr(registry.time, "monotonic", lambda: next(clock))
    rows = {r["name"]: r for r in registry.scan(root)}
    assert set(rows) == {"bad", "good"}
    assert any(r["status"].startswith("unreadable: not read") for r in rows.values())
    full = set(registry.describe(root / "good"))
    assert all(set(r) == full for r in rows.values())  # the Models table needs every column


def test_train_log_of_a_fifo_or_huge_file(tmp_path):
    root = _hostile_root(tmp_path, "metrics.json is a list")
    _fifo(root / "bad" / "train_log.jsonl")
    assert _in_thread(lambda: registry.train_log(root, "bad")) == []
    _link(root / "bad" / "train_log.jsonl", "/dev/zero")
    assert _in_thread(lambda: registry.train_log(root, "bad")) == []


def test_every_page_renders_with_hostile_checkpoints(models_root, tmp_path, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    shutil.copytree(models_root / "tiny-baseline", root / "tiny-baseline")
    (tmp_path / "secret.json").write_text(json.dumps({"clean": {"accuracy": SECRET}}))
    for i, case in enumerate(HOSTILE_ROOT):
        if "40 MB" in case:
            continue
        shutil.copytree(models_root / "tiny-baseline", root / f"bad{i}")
        HOSTILE_ROOT[case](root / f"bad{i}")
    monkeypatch.setenv("ADVVIZ_MODELS_DIR", str(root))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for page in PAGES:
        at = new_app(page)
        assert_clean(at)
        if page == "models":
            table = at.dataframe[0].value
            assert (table["status"].str.startswith("unreadable: ")).sum() == len(HOSTILE_ROOT) - 1 - len(TOLERATED)
            assert str(SECRET) not in table.to_csv()


def test_app_models_dir_that_is_a_file(tmp_path, capsys):
    from advviz.cli import main

    f = tmp_path / "models.txt"
    f.write_text("not a folder")
    assert main(["app", "--models-dir", str(f), "--no-train"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("advviz: error: ") and "not a directory" in err


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return " Z " not in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:4]
    except OSError:
        return False


def test_sigterm_to_advviz_app_stops_the_streamlit_server(tmp_path):
    import signal
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    app = subprocess.Popen([sys.executable, "-m", "advviz", "app", "--models-dir", str(tmp_path), "--no-train",
                            "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    server = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not server:
            server = _children(app.pid)
            time.sleep(0.2)
        assert server, "the Streamlit server did not start"
        time.sleep(1.0)
        app.send_signal(signal.SIGTERM)
        app.wait(timeout=30)
        deadline = time.time() + 20
        while time.time() < deadline and any(_alive(p) for p in server):
            time.sleep(0.2)
        assert not any(_alive(p) for p in server), "the Streamlit server outlived advviz app"
    finally:
        for p in [*server, app.pid]:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        app.wait(timeout=10)


def test_label_free_methods_in_the_app(app_env):
    """vat and uae are attacks in the sidebar and methods of the training form, whose labelled
    share (--labeled-fraction) reaches the run's configuration."""
    from advviz.train import TrainConfig

    at = new_app("sentence")
    assert {"vat", "uae"} <= set(at.selectbox(key="sb_attack").options)
    at = new_app("models")
    assert {"vat", "uae"} <= set(at.selectbox(key="tr_method").options)
    at.selectbox(key="tr_method").set_value("uae").run()
    assert at.number_input(key="trm_UAEConfig_mine_steps").value == 5
    assert at.number_input(key="tr_labeled").value == (TrainConfig.labeled_fraction or 1.0)
    assert_clean(at)


def test_long_sentences_wrap_into_heatmaps_of_16_tokens(app_env):
    at = new_app("sentence")
    at.text_area(key="words_text").input(" ".join(["good", "bad", "dull", "fun"] * 10))  # 40 tokens
    at.button[0].click().run()
    assert_clean(at)
    figs = [json.loads(f.proto.spec) for f in at.get("plotly_chart")]
    assert [len(f["data"][0]["z"][0]) for f in figs] == [16, 16, 8]
    zmax = {f["data"][0]["zmax"] for f in figs}
    assert len(zmax) == 1  # one colour scale across the pieces
    assert any("tokens 17–32 of 40" in c.value for c in at.caption)


def test_training_form_builds_its_configs_once(app_env, monkeypatch):
    """One submit of the training form builds the run's configs once (``TrainRun.configs``: the
    TrainConfig through ``train.resolve_training``, the method's config once), and background.start
    does not build them again; before, the form validated the method config itself and start built
    both again (the method config twice, three builds in all)."""
    import subprocess
    import sys

    from advviz import background
    from advviz.methods import METHODS

    calls = {"train": 0, "method": 0}
    resolve = background.resolve_training
    cfg_cls = METHODS["freelb"].Config
    from_overrides = cfg_cls.from_overrides.__func__

    def count_train(*a, **k):
        calls["train"] += 1
        return resolve(*a, **k)

    def count_method(cls, *a, **k):
        calls["method"] += 1
        return from_overrides(cls, *a, **k)

    popen = subprocess.Popen
    monkeypatch.setattr(background.subprocess, "Popen",  # no training process: this test counts builds only
                        lambda args, **kw: popen([sys.executable, "-c", ""], **kw))
    at = new_app("models")
    at.selectbox(key="tr_method").set_value("freelb").run()
    at.text_input(key="tr_name").input("zz-once")
    monkeypatch.setattr(background, "resolve_training", count_train)
    monkeypatch.setattr(cfg_cls, "from_overrides", classmethod(count_method))
    [b for b in at.button if b.label == "Start training"][0].click().run()
    assert any("started in the background" in s.value for s in at.success), [e.value for e in at.error]
    assert calls == {"train": 1, "method": 1}
