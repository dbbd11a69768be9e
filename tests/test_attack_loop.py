"""One way to attack a data set (issue 25, part 1): ``analysis.attacks.attack_batches`` is the one
loop of the six analyses, the app's Reconstructions page shows ``advviz reconstruct``'s rows for a
random-start attack, and every analysis leaves the model's mode as it found it (also when the
attack raises)."""

from __future__ import annotations

import inspect as pyinspect
import json

import pytest

from advviz.analysis import attacks, augment, inspection, projection, reconstruct, robustness, words
import test_app
from test_app import assert_clean, new_app

models_root, app_env = test_app.models_root, test_app.app_env  # the app's tiny checkpoints (fixtures)

SIX = (words, robustness, projection, reconstruct, augment, inspection)
TEXTS = ["a charming and often affecting journey .", "unfunny and tedious", "the acting is good",
         "it is a bad movie", "a masterpiece"]
LABELS = [1, 0, 1, 0, 1]


def _models(models_root):
    from advviz.api import load

    return load(models_root / "tiny-baseline"), load(models_root / "tiny-rar")


def _analyses(base, rar):
    """Each analysis on the same few texts with pgd (a name -> call)."""
    return {
        "words": lambda: words.attack_tokens(base, TEXTS, LABELS, "pgd", batch_size=2),
        "robustness": lambda: robustness.evaluate_under_attack(base, TEXTS, LABELS, "pgd", batch_size=2),
        "projection": lambda: projection.project_representations(base, TEXTS, LABELS, "pgd", reducer="pca"),
        "reconstruct": lambda: reconstruct.reconstruct_dataset(rar, TEXTS, LABELS, "pgd", batch_size=2),
        "augment": lambda: augment.augment_rows(base, TEXTS, LABELS, "pgd", batch_size=2, keep_unchanged=True),
        "inspection": lambda: inspection.inspect(base, TEXTS[:2], "pgd"),
    }


def test_the_six_modules_have_no_loop_of_their_own():
    for mod in SIX:
        src = pyinspect.getsource(mod)
        assert ".perturb(" not in src and "manual_seed" not in src and ".eval()" not in src, mod.__name__


def test_each_analysis_goes_through_attack_batches(models_root, monkeypatch):
    base, rar = _models(models_root)
    calls = []
    real = attacks.attack_batches

    def spy(*args, **kwargs):
        calls.append(kwargs.get("seed"))
        return real(*args, **kwargs)

    monkeypatch.setattr(attacks, "attack_batches", spy)
    for mod in SIX:
        if hasattr(mod, "attack_batches"):
            monkeypatch.setattr(mod, "attack_batches", spy)
    for name, run in _analyses(base, rar).items():
        calls.clear()
        run()
        assert calls, f"{name} attacked without attacks.attack_batches"


@pytest.mark.parametrize("name", ["words", "robustness", "projection", "reconstruct", "augment", "inspection"])
@pytest.mark.parametrize("raises", [False, True])
def test_each_analysis_restores_the_models_mode(models_root, monkeypatch, name, raises):
    """A classifier (and a RAR head) in train mode is in train mode afterwards; projection left it
    in eval mode before."""
    from advviz.methods.pgd import PGD

    base, rar = _models(models_root)
    modules = [base.classifier, rar.classifier, rar.rar_head]
    for m in modules:
        m.train()
    if raises:
        def boom(self, *args, **kwargs):
            raise RuntimeError("boom")

        monkeypatch.setattr(PGD, "adversary", boom)
        with pytest.raises(RuntimeError, match="boom"):
            _analyses(base, rar)[name]()
    else:
        _analyses(base, rar)[name]()
    assert all(m.training for m in modules)


def test_reconstructions_page_shows_the_commands_rows(app_env):
    """The page used to split the slice into chunks of 32, each reseeded with seed + start: with a
    random start its rows beyond the first 32 were not ``advviz reconstruct``'s."""
    from advviz.api import load

    at = new_app("reconstructions")
    assert_clean(at)
    at.selectbox(key="sb_attack").set_value("pgd").run()
    at.number_input(key="sb_pgd_lstm_init_mag").set_value(5.0).run()
    at.number_input(key="sb_pgd_lstm_epsilon").set_value(5.0).run()
    at.number_input(key="rec_n").set_value(48)
    at.button(key="rec_go").click().run()
    assert_clean(at)
    page = at.dataframe[-1].value
    at.run()  # a rerun shows the stored slice
    assert_clean(at)
    assert at.dataframe[-1].value.equals(page)
    model, judge, dataset, start, n, attack, seed, overrides_json = at.session_state["rec_request"]
    assert attack == "pgd" and json.loads(overrides_json)["init_mag"] == 5.0
    rar = load(app_env / model)
    ds = rar.examples(dataset, "dev")  # what the command attacks for --dataset/--split dev
    texts, labels = ds.texts[start:start + n], ds.labels[start:start + n]
    cli = reconstruct.reconstruct_dataset(rar, texts, labels, attack, json.loads(overrides_json),
                                          judge=load(app_env / judge) if judge else None, seed=seed)
    cols = ["text", "reconstructed_text", "changed", "n_changed_tokens", "n_tokens"]
    assert len(page) == 48
    assert page[cols].reset_index(drop=True).equals(cli[cols].reset_index(drop=True))
    other = reconstruct.reconstruct_dataset(rar, texts, labels, attack, json.loads(overrides_json), seed=seed + 1)
    assert not other["reconstructed_text"].equals(cli["reconstructed_text"])  # the test can see a reseed


@pytest.mark.parametrize("name", ["reconstruct", "augment"])
def test_labels_outside_the_classes_are_one_line(models_root, name):
    """reconstruct and augment did not check the labels (a traceback deep in the attack)."""
    from advviz.errors import AdvvizError

    base, rar = _models(models_root)
    bad = [0, 7, 1, 0, 1]
    run = (lambda: reconstruct.reconstruct_dataset(rar, TEXTS, bad, "pgd")) if name == "reconstruct" \
        else (lambda: augment.augment_rows(base, TEXTS, bad, "pgd"))
    with pytest.raises(AdvvizError, match=r"labels must be in 0\.\.1"):
        run()
