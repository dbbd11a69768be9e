"""One config source (issue 13): every default is written once, on its dataclass field, and the
CLI, the app's training form and the background jobs all read it from there; a flag the chosen
method or model family does not use is refused; the package has no import cycle."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from advviz.analysis.lm import LMConfig, LMTrainConfig
from advviz.cli import build_parser, main
from advviz.config import FAMILY_PRESETS, flag_fields, flag_of, given, method_preset
from advviz.methods import METHODS, build_method
from advviz.models import ModelOptions
from advviz.train import TrainConfig

REPO = Path(__file__).resolve().parent.parent


def _actions(parser, argv):
    """dest -> argparse action of the subcommand ``argv[0]`` (``lm`` descends to ``lm train``)."""
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices[argv[0]]
    if argv[0] == "lm":
        sub = next(a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction").choices["train"]
    return {a.dest: a for a in sub._actions}


def _help_default(action) -> str | None:
    m = re.search(r"\(default: ([^)]*)\)", (action.help or "").replace("%%", "%"))
    return m.group(1) if m else None


@pytest.mark.parametrize("method", sorted(METHODS))
def test_train_flags_and_help_come_from_the_dataclasses(method):
    argv = ["train", "--method", method]
    parser = build_parser(argv)
    actions = _actions(parser, argv)
    args = parser.parse_args(argv)
    # no flag given: exactly the dataclasses' defaults (the method's after the lstm family preset)
    assert TrainConfig(**given(args, TrainConfig)) == TrainConfig(method=method)
    assert ModelOptions(**given(args, ModelOptions)) == ModelOptions()
    cls = METHODS[method].Config
    for config in (TrainConfig, ModelOptions, cls):
        for f in flag_fields(config):
            a = actions[f.name]
            assert a.default is None and flag_of(f) in a.option_strings  # "not given" is None; flag from the field
            shown = method_preset(method, "lstm").get(f.name, f.default) if config is cls else f.default
            if shown not in (None, False):
                assert _help_default(a) == str(shown), (config.__name__, f.name, a.help)
    assert {f.name for f in flag_fields(cls)} <= set(actions)
    others = {f.name for c in METHODS.values() for f in flag_fields(c.Config)} - {f.name for f in flag_fields(cls)}
    assert not others & set(actions) - {f.name for f in flag_fields(TrainConfig)} - {f.name for f in flag_fields(ModelOptions)}


def test_lm_train_flags_come_from_the_lm_dataclasses():
    argv = ["lm", "train"]
    actions = _actions(build_parser(argv), argv)
    for config in (LMTrainConfig, LMConfig):
        for f in flag_fields(config):
            assert actions[f.name].default is None and flag_of(f) in actions[f.name].option_strings
            if f.default not in (None, False):
                assert _help_default(actions[f.name]) == str(f.default)
    assert "--layers" in actions["num_layers"].option_strings  # the flag keeps its name; the field is num_layers


def test_no_default_is_written_twice_in_the_cli_or_the_app_form():
    """The CLI and the app form read defaults from the fields: no number of a config default is
    written into a parser or a widget by hand."""
    cli = (REPO / "advviz" / "cli.py").read_text()
    assert not re.search(r"add_argument\(\"--(epochs|batch-size|lr|seed|hidden-size|max-vocab|min-freq)\"", cli)
    form = (REPO / "app" / "appkit" / "training.py").read_text()
    for name in ("epochs", "seed", "batch_size", "max_train", "max_steps", "max_eval"):
        assert f"T.{name}" in form, name  # the widget's default is the TrainConfig field's


def test_app_training_form_shows_the_dataclass_defaults(data_dir, monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("ADVVIZ_MODELS_DIR", str(tmp_path))
    at = AppTest.from_file(str(REPO / "app" / "streamlit_app.py"), default_timeout=120).run()
    T = TrainConfig()
    for key, value in (("tr_epochs", T.epochs), ("tr_seed", T.seed), ("tr_batch", T.batch_size),
                       ("tr_max_train", T.max_train or 0), ("tr_max_steps", T.max_steps or 0),
                       ("tr_max_eval", T.max_eval or 0), ("tr_hidden", ModelOptions().hidden_size or 0)):
        assert at.number_input(key=key).value == value, key
    assert at.selectbox(key="tr_preset").value == T.preset and at.selectbox(key="tr_arch").value == T.arch
    for method in ("spgd", "freelb", "carl"):
        at.selectbox(key="tr_method").set_value(method).run()
        cls = METHODS[method].Config
        expected = {**cls().to_dict(), **method_preset(method, "lstm")}
        for f in flag_fields(cls):
            w = at.selectbox if f.metadata.get("choices") else None
            key = f"trm_{cls.__name__}_{f.name}"
            got = (w(key=key) if w else next(x for x in [*at.number_input, *at.checkbox, *at.text_input]
                                             if x.key == key)).value
            assert str(got) == str(expected[f.name]), (method, f.name)


def test_background_runs_use_the_same_configs(tmp_path):
    from advviz import background

    run = background.TrainRun("x", {"method": "spgd", "epochs": 1, "hidden_size": 8}, {"k": 5})
    cfg, opts, method = run.configs(tmp_path)
    assert cfg == TrainConfig(method="spgd", epochs=1, out=str(tmp_path / "x"))
    assert opts == ModelOptions(hidden_size=8)
    assert method.config == METHODS["spgd"].Config(k=5, **FAMILY_PRESETS["lstm"]["spgd"])
    assert run.argv(tmp_path)[:1] == ["train"] and "--k" in run.argv(tmp_path)
    parsed = build_parser(run.argv(tmp_path)).parse_args(run.argv(tmp_path))
    assert TrainConfig(**given(parsed, TrainConfig)) == cfg  # the logged command line means the same run


# -- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv,message", [
    (["train", "--method", "advt", "--steps", "5"], "--steps is not a setting of --method advt"),
    (["train", "--steps", "5"], "--steps is not a setting of --method baseline"),
    (["train", "--method", "spgd", "--carl-start", "10"], "--carl-start is not a setting of --method spgd"),
    (["train", "--arch", "minilm", "--hidden-size", "64"], "--hidden-size does not apply to --arch minilm"),
    (["train", "--arch", "lstm", "--embedding-dim", "64"], "--embedding-dim does not apply to --arch lstm"),
    (["train", "--warmup", "0.2"], "--warmup does not apply to --arch lstm"),
    (["inspect", "CKPT", "--attack", "advt", "--k", "3"], "--k is not a setting of --attack advt"),
    (["eval", "CKPT", "--epsilon", "1"], "--epsilon is a setting of"),
    (["report", "A", "--out", "r.md", "--tau", "0.1"], "--tau is not a setting of --attack pgd"),
])
def test_a_flag_the_choice_does_not_use_is_refused_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err


def test_per_method_help_lists_that_methods_flags(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--method", "spgd", "--help"])
    out = capsys.readouterr().out
    assert "--sparsity" in out and "--tau" not in out.split("method defaults")[0]
    assert "(default: 2.0) for --arch lstm (--preset paper: 25.0)" in " ".join(out.split())


def test_library_configs_refuse_settings_they_do_not_have():
    from advviz.errors import AdvvizError

    with pytest.raises(AdvvizError, match="--k is not a setting"):
        build_method("advt", {"k": 3})


# -- presets and seeds ---------------------------------------------------------------------------


def test_family_presets_apply_per_architecture_and_paper_restores_the_papers():
    assert method_preset("spgd", "lstm") == {"epsilon": 2.0}
    assert method_preset("spgd", "minilm") == FAMILY_PRESETS["hf"]["spgd"]
    assert method_preset("spgd", "lstm", "paper") == {} and method_preset("freelb", "lstm") == {}
    from advviz.analysis.attacks import build_attack, paper_overrides
    from conftest import make_tiny_rnn

    core = make_tiny_rnn("lstm")
    assert build_attack("spgd", None, core).config.epsilon == 2.0
    assert build_attack("spgd", paper_overrides("spgd"), core).config.epsilon == 25.0
    assert build_attack("spgd", {"epsilon": 3.0}, core).config.epsilon == 3.0


def test_methods_take_their_seed_not_the_global_random_state():
    import torch

    from conftest import make_tiny_rnn

    draws = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        m = build_method("freelb")
        m.setup(make_tiny_rnn("lstm"), seed=5)
        draws.append(torch.rand(3, generator=m.generator))
    assert torch.equal(*draws)


# -- structure -----------------------------------------------------------------------------------


def _import_graph() -> dict[str, set[str]]:
    mods = {}
    for p in (REPO / "advviz").rglob("*.py"):
        parts = list(p.relative_to(REPO).with_suffix("").parts)
        pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if pkg else parts)] = (p, pkg)
    graph = {m: set() for m in mods}
    for m, (p, pkg) in mods.items():
        for node in ast.walk(ast.parse(p.read_text())):  # function-level imports count too
            names = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = (m.split(".") if pkg else m.split(".")[:-1])
                    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                    base = ".".join(base + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for t in names:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != m:
                    graph[m].add(t)
    return graph


def test_the_package_has_no_import_cycle():
    graph, seen, done = _import_graph(), set(), set()

    def visit(v, path):
        if v in path:
            raise AssertionError(" -> ".join(path[path.index(v):] + [v]))
        if v in done:
            return
        for w in graph[v]:
            visit(w, path + [v])
        done.add(v)

    for v in graph:
        visit(v, [])


def test_readme_layout_names_every_package_and_top_level_module():
    readme = (REPO / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    for p in sorted((REPO / "advviz").iterdir()):
        if p.name.startswith("_") or p.name == "__pycache__":
            continue
        name = p.name + ("/" if p.is_dir() else "")
        assert re.search(r"(^|[\s,(])" + re.escape(name) + r"($|[\s,)])", layout, re.M), name


def test_default_set_is_split_over_the_cores_by_cost(tmp_path, monkeypatch):
    """The app's default set trains one job per core, the costly runs apart, each job on the
    threads its share of the cores gives it; every run is checked before any job starts."""
    from advviz import background
    from advviz.errors import AdvvizError

    suite = background.default_suite(tmp_path)
    groups = background.split_runs(suite, 2)
    cost = lambda g: sum(background.DEFAULT_COST[r.train["method"]] for r in g)  # noqa: E731
    assert sorted(r.name for g in groups for r in g) == sorted(r.name for r in suite)
    assert {r.train["method"] for r in groups[0]} >= {"rar"} and "carl" in {r.train["method"] for r in groups[1]}
    assert max(map(cost, groups)) <= 1.2 * sum(background.DEFAULT_COST.values()) / 2
    assert [r.name for r in groups[0]] == [r.name for r in suite if r in groups[0]]  # given order kept
    assert background.split_runs(suite[:1], 4) == [suite[:1]]

    started = []
    monkeypatch.setattr(background, "start", lambda root, runs, threads=None: started.append((runs, threads)) or "j")
    monkeypatch.setattr(background.os, "cpu_count", lambda: 2)
    assert background.start_parallel(tmp_path, suite) == ["j", "j"]
    assert [t for _, t in started] == [1, 1] and sum(len(r) for r, _ in started) == len(suite)
    started.clear()
    bad = [*suite, background.TrainRun("../out", {"method": "baseline"})]
    with pytest.raises(AdvvizError):
        background.start_parallel(tmp_path, bad)
    assert started == []  # nothing started when one run is invalid
