"""One way to resolve a setting (issue 25, part 2): field default -> family preset -> the user's
value in one function (``config.resolve_method``), one validation of a training run on every path
that starts one (``config.resolve_training``: the CLI and the app's form / background jobs), and one
ε grid for ``advviz eval --attack`` without ``--eps`` and the Robustness page."""

from __future__ import annotations

import json

import pytest

from advviz import background, registry
from advviz.analysis.robustness import default_epsilons
from advviz.cli import main
from advviz.errors import AdvvizError

from test_hostile_cli import TINY, one_line, toy  # noqa: F401  (toy: the fixture)


def test_resolve_method_default_then_preset_then_given():
    from advviz.methods import resolve_method

    assert resolve_method("spgd", "lstm")["epsilon"] == 2.0  # the lstm preset over the paper's 25
    assert resolve_method("spgd", "lstm", preset="paper")["epsilon"] == 25.0
    assert resolve_method("spgd", "bigru", {"epsilon": 3.0, "steps": None})["epsilon"] == 3.0  # given wins
    assert resolve_method("spgd", "bigru", {"steps": None})["steps"] == resolve_method("spgd", None)["steps"]
    with pytest.raises(AdvvizError, match="--hidden-size is not a setting of"):
        resolve_method("spgd", "lstm", {"hidden_size": 4})


def test_family_flag_refused_the_same_on_the_cli_and_in_the_app_form(toy, tmp_path, capsys):
    """``--hidden-size`` with a transformer: one line from ``advviz train`` and the same message from
    the app's form path (``background.start``, what its submit calls), and no job starts."""
    cli = one_line(capsys, ["train", "--dataset", toy, "--arch", "minilm", "--hidden-size", "64",
                            "--out", tmp_path / "m"])
    run = background.TrainRun("m", {"dataset": str(toy), "arch": "minilm", "hidden_size": 64}, {})
    with pytest.raises(AdvvizError) as e:
        background.start(tmp_path / "root", [run])
    assert cli == f"advviz: error: {e.value}"
    assert "--hidden-size does not apply to --arch minilm" in cli
    assert not (tmp_path / "root" / ".jobs").exists() or not any((tmp_path / "root" / ".jobs").iterdir())


def _eval_eps(capsys, argv) -> list[float]:
    assert main([str(a) for a in argv]) == 0
    return [a["epsilon"] for a in json.loads(capsys.readouterr().out)["attacks"]]


def test_eval_attack_and_the_robustness_page_give_the_same_eps_grid(toy, tmp_path, capsys):
    root = tmp_path / "models"
    d = root / "spgd-model"
    assert main([str(a) for a in ["train", "--dataset", toy, *TINY, "--method", "spgd", "--k", "5", "--out", d]]) == 0
    capsys.readouterr()
    rows = registry.scan(root)  # what the Robustness page reads (core.models())
    common = [d, "--dataset", toy, "--split", "dev", "--max-examples", "4", "--steps", "1", "--json"]
    # trained with SPGD: the grid is around its training ε (the bigru preset, 6.5)
    cli = _eval_eps(capsys, ["eval", *common, "--attack", "spgd", "--k", "5"])
    assert cli == default_epsilons("spgd", {}, ["spgd-model"], rows) == [3.25, 6.5, 13.0]
    # the user's ε: half, once and twice it
    cli = _eval_eps(capsys, ["eval", *common, "--attack", "pgd", "--epsilon", "0.3"])
    assert cli == default_epsilons("pgd", {"epsilon": 0.3}, ["spgd-model"], rows) == [0.15, 0.3, 0.6]
    # --eps still gives exactly its values
    assert _eval_eps(capsys, ["eval", *common, "--attack", "pgd", "--eps", "0.1"]) == [0.1]


def test_command_defaults_are_one_table():
    """The default attack of each command, the perplexity attacks and TextAttack's batch size are
    read from ``config.COMMAND_DEFAULTS`` by the parsers, ``flags.METHOD_FLAG`` and the library."""
    import inspect as pyinspect

    from advviz.analysis import discrete, inspection, reconstruct, report
    from advviz.cli import build_parser
    from advviz.commands import flags
    from advviz.config import COMMAND_DEFAULTS

    attack = COMMAND_DEFAULTS["attack"]
    for command in ("inspect", "augment", "report", "reconstruct"):
        argv = [command, "x"] + (["--out", "o"] if command in ("report", "augment") else [])
        assert build_parser(argv).parse_args(argv).attack == attack[command] == flags.METHOD_FLAG[command][1]
    args = build_parser(["report", "x", "--out", "o"]).parse_args(["report", "x", "--out", "o"])
    assert tuple(args.ppl_attacks.split(",")) == COMMAND_DEFAULTS["ppl_attacks"]
    assert tuple(float(e) for e in args.eps.split(",")) == COMMAND_DEFAULTS["report_eps"] \
        == tuple(report.DEFAULT_EPSILONS)
    assert flags.named_methods(["report", "x"], "report") == ["pgd", *COMMAND_DEFAULTS["ppl_attacks"]]
    args = build_parser(["eval", "x"]).parse_args(["eval", "x"])
    assert args.attack_batch_size == COMMAND_DEFAULTS["textattack_batch_size"]
    default = lambda f, name: pyinspect.signature(f).parameters[name].default  # noqa: E731
    assert default(inspection.inspect, "attack") == attack["inspect"]
    assert default(reconstruct.reconstruct_dataset, "attack") == attack["reconstruct"]
    assert default(report.build_report, "ppl_attacks") == COMMAND_DEFAULTS["ppl_attacks"]
    assert default(discrete.run_textattack, "batch_size") == COMMAND_DEFAULTS["textattack_batch_size"]
