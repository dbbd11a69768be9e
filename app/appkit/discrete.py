"""TextAttack runs shared by "Robustness" and "Which words move": cached per (model, data set, n,
recipe, seed), so opening an example on one page reuses the attack run on the other."""

from __future__ import annotations

import json

import streamlit as st

from advviz.analysis import discrete
from advviz.errors import AdvvizError

from . import shared

SCALARS = ("recipe", "clean_accuracy", "accuracy", "attack_success_rate", "mean_queries", "perturbed_word_share",
           "n", "succeeded", "failed", "skipped", "examples_per_second", "seconds")


def unavailable() -> str | None:
    """None when TextAttack imports; else the one line that says how to install the extra."""
    try:
        discrete.import_textattack()
    except AdvvizError as e:
        return str(e)
    return None


def recipes() -> list[str]:
    return list(discrete.RECIPES)


def variants(names: list[str]) -> dict[str, str]:
    """What differs from the published recipe, for the recipes that are variants."""
    return {r: discrete.RECIPES[r].variant for r in names if discrete.RECIPES[r].variant}


def recipe_help() -> str:
    return "  \n".join(f"**{r.name}** — {r.title}" + (f" ({r.variant})" if r.variant else "")
                       for r in discrete.RECIPES.values())


@st.cache_data(max_entries=32, show_spinner=False)
def run(key: tuple, dataset: str, n: int, recipe: str, seed: int) -> dict:
    """``run_textattack`` on the first ``n`` dev examples of the seeded subset (as the page's curves)."""
    model = shared._load(*key)
    ds = shared.model_dataset(model, dataset).subset(n, seed)
    return discrete.run_textattack(model, ds.texts, ds.labels, recipe, seed=seed)


@st.cache_data(max_entries=32, show_spinner=False)
def overlap(key: tuple, dataset: str, n: int, recipe: str, attack: str, overrides_json: str, seed: int) -> dict:
    model = shared._load(*key)
    res = run(key, dataset, n, recipe, seed)
    return discrete.overlap(model, res["per_example"], attack, json.loads(overrides_json), seed)


def augment_csv(key: tuple, res: dict) -> str:
    """The successful examples as the CSV ``advviz train --augment`` reads."""
    return discrete.csv_text(discrete.adversarial_rows(shared._load(*key), res["per_example"], res["row"]["name"]))
