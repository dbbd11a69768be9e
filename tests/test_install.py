"""advviz installs like a library (issue 27): the wheel carries the app, data is found in a documented
order (or not needed: a file by path), and the version the package reports is the one checkpoints
record and check. The wheel itself is built, installed into a fresh venv and run from an empty
directory by .ci/wheel-check.sh (`make test-wheel`, part of `make test`)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import advviz
from advviz import data
from advviz.data import named
from advviz.cli import main
from advviz.commands import app as app_cmd
from advviz.errors import AdvvizError
from advviz.storage.checkpoint import FORMAT_VERSION

REPO = Path(__file__).resolve().parent.parent
TINY = ["--arch", "bigru", "--hidden-size", "4", "--embedding-dim", "4", "--max-steps", "2", "--quiet"]


def one_line(capsys, argv, code=2) -> str:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == code and len(lines) == 1 and lines[0].startswith("advviz: error: "), err
    return lines[0]


def _toy(path: Path) -> Path:
    rows = [f"the film was {'good great fine'.split()[i % 3] if i % 2 else 'bad dull poor'.split()[i % 3]}\t{i % 2}\n"
            for i in range(60)]
    path.write_text("text\tlabel\n" + "".join(rows))
    return path


def test_the_wheel_lists_every_package_of_the_tree():
    """pyproject.toml names the packages explicitly (the app is mapped from app/ to advviz_app): a new
    subpackage left out of the list would be missing from every pip install."""
    setup = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setup["package-dir"] == {"advviz_app": "app"}
    tree = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "advviz").rglob("__init__.py")}
    tree |= {"advviz_app" + "".join("." + x for x in p.relative_to(REPO / "app").parts)
             for p in [REPO / "app", *(REPO / "app").iterdir()] if p.is_dir() and list(p.glob("*.py"))}
    assert set(setup["packages"]) == tree  # every folder of Python files under app/, pages included


def test_app_entry_from_a_checkout_and_from_an_install(tmp_path, monkeypatch):
    assert app_cmd.app_file() == REPO / "app" / "streamlit_app.py"
    # no checkout around the package (a wheel install): the advviz_app package's file
    monkeypatch.setattr(app_cmd, "CHECKOUT", tmp_path)
    installed = tmp_path / "site" / "advviz_app"
    installed.mkdir(parents=True)
    (installed / "streamlit_app.py").write_text("")
    spec = type("Spec", (), {"submodule_search_locations": [str(installed)]})()
    monkeypatch.setattr(app_cmd.importlib.util, "find_spec", lambda name: spec if name == "advviz_app" else None)
    assert app_cmd.app_file() == installed / "streamlit_app.py"
    monkeypatch.setattr(app_cmd.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(AdvvizError, match="the advviz app is not installed"):
        app_cmd.app_file()


def test_one_version_everywhere(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"advviz {advviz.__version__}"
    assert importlib.metadata.version("advviz") == advviz.__version__
    assert main([str(a) for a in ["train", "--dataset", _toy(tmp_path / "t.tsv"), *TINY, "--out", tmp_path / "m"]]) == 0
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["versions"]["advviz"] == advviz.__version__ and cfg["format_version"] == FORMAT_VERSION


@pytest.mark.parametrize("value, expect", [(FORMAT_VERSION + 1, "written by a newer advviz (9.9.9) in checkpoint format"),
                                           ("2", "is not a checkpoint format"), (0, "is not a checkpoint format"),
                                           (True, "is not a checkpoint format")])
def test_a_newer_checkpoint_format_is_refused_naming_both_versions(tmp_path, capsys, value, expect):
    assert main([str(a) for a in ["train", "--dataset", _toy(tmp_path / "t.tsv"), *TINY, "--out", tmp_path / "m"]]) == 0
    capsys.readouterr()
    p = tmp_path / "m" / "config.json"
    cfg = json.loads(p.read_text())
    p.write_text(json.dumps({**cfg, "format_version": value, "versions": {**cfg["versions"], "advviz": "9.9.9"}}))
    line = one_line(capsys, ["eval", tmp_path / "m", "--dataset", tmp_path / "t.tsv"])
    assert expect in line
    if value == FORMAT_VERSION + 1:
        assert f"this advviz {advviz.__version__} reads format {FORMAT_VERSION}" in line


def test_data_directory_order(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    where = data.data_dir_search()
    assert [w for w, _ in where] == ["beside the checkout", "./data"]  # the tests run from a checkout
    assert where[0][1] == REPO.parent / "shared" / "data" and where[1][1] == tmp_path / "data"
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "env"))
    assert data.data_dir_search() == [("$ADVVIZ_DATA_DIR", tmp_path / "env")]
    assert data.data_dir_search(tmp_path / "flag") == [("--data-dir", tmp_path / "flag")]  # the flag wins
    assert main(["data", "list", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "looked for in this order" in out and "1. --data-dir" in out and "Hugging Face hub" in out


def test_a_file_by_path_needs_no_data_directory(tmp_path, monkeypatch, capsys):
    """From a folder outside the checkout, with the data directory pointing nowhere: a CSV given by
    path trains and evaluates; a named set says in one line where it looked and what to install."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "nowhere"))
    monkeypatch.setattr(named, "_CACHE", {})
    csv = tmp_path / "mine.csv"
    csv.write_text("text,label\n" + "".join(f"{'nice fine' if i % 2 else 'bad poor'} film {i},{'pos' if i % 2 else 'neg'}\n"
                                            for i in range(40)))
    assert main([str(a) for a in ["train", "--dataset", csv, *TINY, "--out", tmp_path / "m"]]) == 0
    assert main([str(a) for a in ["eval", tmp_path / "m", "--dataset", csv, "--json"]]) == 0
    capsys.readouterr()
    monkeypatch.setattr(named, "hub_available", lambda: False)
    monkeypatch.setitem(sys.modules, "datasets", None)  # the [hub] extra not installed: import fails
    monkeypatch.delenv(data.DATA_DIR_ENV)
    monkeypatch.setattr(named, "data_dir_search", lambda d=None: [("./data", tmp_path / "data")])
    line = one_line(capsys, ["train", "--dataset", "mr", *TINY, "--out", tmp_path / "m2"])
    assert "pip install 'advviz[hub]'" in line and str(tmp_path / "data") in line


def test_makefile_and_ci_run_the_wheel_check():
    make = (REPO / "Makefile").read_text()
    assert re.search(r"^test: .*test-wheel", make, re.M)
    assert (REPO / ".ci" / "wheel-check.sh").is_file()
    readme = (REPO / "README.md").read_text()
    assert "pip install" in readme[readme.index("## Install"):]


def test_the_models_root_does_not_import_the_trainer():
    """The models-root scanner reads the default models folder from storage.outdir, below it and the
    trainer, instead of importing train (and torch's optimisers, accelerate) for a path."""
    code = ("import sys; from advviz import registry; registry.models_root(); "
            "print('advviz.train' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, check=True).stdout
    assert out.strip() == "False"
