"""A reproduction report over several checkpoints, in the shape of the papers' tables.

    build_report(["models/a", "models/b"], "sst2-sent", split="dev", out_md="report.md")

One row per checkpoint: clean accuracy (CARL Table 2 / SPGD Table 3), accuracy under k-PGD at
each ε (CARL Table 5), mean orig–adv cosine / Euclidean distance of sentence representations
(CARL Table 4), LM perplexity of original vs discretized adversarial text and the gap (SPGD
Table 1, when an LM is given), parameter count (CARL Table 7) and training time; with
``textattack=[RECIPE, ...]``, the discrete attacks the field reports (TextAttack's clean accuracy,
accuracy under attack, attack success rate, queries and perturbed-word share:
:mod:`advviz.analysis.discrete`), on the same examples or the first ``textattack_examples`` of them.
Written as markdown and JSON (``out_md`` with ``.json``).

Checkpoints trained with the same settings but different ``--seed`` are also averaged
(``seed_groups``: mean and sample standard deviation per method), as the papers report the
mean of three seeds.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

from ..api import load
from ..config import COMMAND_DEFAULTS, default_attack
from ..errors import AdvvizError
from ..evaluate import evaluate, stall_note
from ..methods.carl import ld_status
from ..storage.jsonio import dumps
from ..storage.outputs import Outputs, write_output
from .attacks import resolved_overrides
from .discrete import check_recipe, refuse_unused_neighbors, run_textattack
from .lm import adversarial_perplexity, load_lm
from .robustness import evaluate_under_attack

DEFAULT_EPSILONS = list(COMMAND_DEFAULTS["report_eps"])  # CARL Table 5


def _count_parameters(model) -> dict:
    core = model.classifier.num_parameters()
    extra = sum(int(t.numel()) for state in model.checkpoint.extra_state.values() for t in state.values())
    return {"parameters": core + extra, "parameters_classifier": core, "parameters_extra": extra}


# training settings that do not make two runs different experiments (only where they are written)
_NOT_SETTINGS = ("seed", "out", "resume", "overwrite", "data_dir", "save_every", "log_every")


def _settings_key(cfg: dict) -> str:
    """Everything that defines the experiment except the seed (and where it was written)."""
    train = {k: v for k, v in (cfg.get("train") or {}).items() if k not in _NOT_SETTINGS}
    return json.dumps({"train": train, "method": cfg.get("method"), "model": cfg.get("model_options"),
                       "data": (cfg.get("data") or {}).get("name")}, sort_keys=True, default=str)


def _describe(model) -> dict:
    cfg, m = model.config, model.metrics
    train = cfg.get("train", {})
    method = m.get("method") or (cfg.get("method") or {}).get("name") or train.get("method")
    ld = ld_status(cfg.get("method"), m) or {}
    return {"checkpoint": str(model.directory), "name": model.name, "arch": train.get("arch"),
            "method": method, "ld_steps": ld.get("ld_steps"),
            "note": "; ".join(n for n in (stall_note(m), ld.get("note", "")) if n),
            "trained_on": cfg.get("data", {}).get("name"), "train_seed": train.get("seed"),
            "settings": _settings_key(cfg),
            "dev_accuracy_at_training": m.get("dev_accuracy"), "steps": m.get("total_steps", m.get("steps")),
            "train_seconds": m.get("total_train_seconds", m.get("train_seconds")), **_count_parameters(model)}


def check_labels(models) -> None:
    """Every model was trained on the first one's label names: a report compares checkpoints on
    one label set (the data set's labels are then aligned to it, :func:`advviz.data.align_labels`)."""
    first = models[0]
    for mdl in models[1:]:
        if list(mdl.label_names) != list(first.label_names):
            raise AdvvizError(f"{mdl.name} was trained on labels {list(mdl.label_names)} but {first.name} on "
                              f"{list(first.label_names)}; a report compares checkpoints on one label set")


def parse_attack_spec(spec: str) -> tuple[str, dict]:
    """'spgd' -> ('spgd', {}); 'spgd@2.5' -> ('spgd', {'epsilon': 2.5}) (one clear error otherwise)."""
    name, _, eps = spec.strip().partition("@")
    if not eps:
        return name, {}
    try:
        value = float(eps)
    except ValueError:
        raise AdvvizError(f"attack '{spec}': write NAME or NAME@EPSILON, e.g. spgd@2.5") from None
    if not value >= 0:
        raise AdvvizError(f"attack '{spec}': ε must be >= 0")
    return name, {"epsilon": value}


DISCRETE_KEYS = ("name", "clean_accuracy", "accuracy", "attack_success_rate", "mean_queries", "perturbed_word_share",
                 "n", "succeeded", "failed", "skipped", "examples_per_second", "variant")
DISCRETE_MEANS = ("clean_accuracy", "accuracy", "attack_success_rate", "mean_queries", "perturbed_word_share")


def report_row(model, texts, labels, attack, epsilons, overrides, lm=None, ppl_attacks=(), seed=0,
               batch_size=32, progress=False, textattack=(), textattack_examples=None, preset="family",
               neighbors=None, data_dir=None) -> dict:
    """One checkpoint's row. ``preset`` ("family" or "paper", as ``--preset``) is applied to every
    attack of the row, the perplexity table's included, so ``report --preset paper`` attacks at the
    papers' values throughout (the rule: :func:`attacks.resolved_overrides`). ``neighbors``,
    ``data_dir``: the substitution sets of a TextAttack recipe that reads them."""
    row = _describe(model)
    clean = evaluate(model.classifier, texts, labels, batch_size)
    row.update(clean_accuracy=clean["accuracy"], clean_loss=clean["loss"], n=clean["n"])
    t0 = time.perf_counter()
    res = evaluate_under_attack(model, texts, labels, attack, overrides, epsilons, batch_size, seed, progress)
    row["attack_seconds"] = time.perf_counter() - t0
    row["attacks"] = [{k: r[k] for k in ("epsilon", "accuracy", "cosine", "euclidean", "flip_rate")} for r in res]
    row["perplexity"] = []
    if lm is not None:
        for spec in ppl_attacks:
            name, ov = parse_attack_spec(spec)
            p = adversarial_perplexity(model, lm, texts, labels, name, resolved_overrides(name, ov, preset), seed,
                                       progress)
            keys = ("original_perplexity", "adversarial_perplexity", "gap", "changed_tokens_per_text", "nearest_gap",
                    "nearest_changed_tokens_per_text", "adv_accuracy")
            row["perplexity"].append({"attack": spec, **{k: p[k] for k in keys}})
    row["discrete"] = []
    n = len(texts) if textattack_examples is None else min(textattack_examples, len(texts))
    for recipe in textattack:
        if progress:
            print(f"  textattack:{recipe} on {n} examples", flush=True)
        res = run_textattack(model, texts[:n], labels[:n], recipe, seed=seed, neighbors=neighbors, data_dir=data_dir)
        row["discrete"].append({k: res["row"].get(k) for k in DISCRETE_KEYS})
    return row


def build_report(dirs, dataset: str, split: str = "dev", attack: str = default_attack("report"),
                 epsilons: list[float] | None = None,
                 overrides: dict | None = None, lm_dir: str | os.PathLike | None = None,
                 ppl_attacks: list[str] | tuple = COMMAND_DEFAULTS["ppl_attacks"], max_examples: int | None = None,
                 seed: int = 0, batch_size: int = 32, data_dir=None, out_md: str | os.PathLike | None = None,
                 title: str | None = None, progress: bool = False, textattack: list[str] | tuple = (),
                 textattack_examples: int | None = None, overwrite: bool = False, preset: str = "family",
                 neighbors=None) -> dict:
    """Evaluate every checkpoint in ``dirs`` on one split and write the tables (see module doc);
    ``out_md`` and its JSON are checked first (:func:`check_outputs`). ``preset``: the attacks'
    defaults, each model's family preset or the papers' values (``--preset``), for the robustness
    and the perplexity attacks alike."""
    if not dirs:
        raise AdvvizError("give at least one checkpoint directory")
    if textattack or neighbors:
        textattack = list(dict.fromkeys(check_recipe(r, neighbors, data_dir) for r in textattack))
        refuse_unused_neighbors(neighbors, textattack)
    if textattack_examples is not None and textattack_examples <= 0:
        raise AdvvizError(f"--textattack-examples must be positive, got {textattack_examples}")
    epsilons = list(DEFAULT_EPSILONS if epsilons is None else epsilons)
    if max_examples is not None and max_examples <= 0:
        raise AdvvizError(f"--max-examples must be positive, got {max_examples}")
    if out_md is not None:
        check_outputs(out_md, dirs, dataset, data_dir, lm_dir, overwrite)
    models = [load(d) for d in dirs]
    check_labels(models)
    ds = models[0].examples(dataset, split, data_dir)
    sub = ds.subset(max_examples, seed)
    if max_examples is not None and max_examples > len(ds):
        print(f"advviz: note: asked for {max_examples} examples but {dataset}/{split} has {len(ds)}; using all",
              file=sys.stderr)
    lm = None
    if lm_dir is not None:
        lm = load_lm(lm_dir)
    overrides = {k: v for k, v in resolved_overrides(attack, overrides, preset).items()
                 if v is not None and k != "epsilon"}
    rows = []
    for i, mdl in enumerate(models):
        if progress:
            print(f"[{i + 1}/{len(models)}] {mdl.name}", flush=True)
        rows.append(report_row(mdl, sub.texts, sub.labels, attack, epsilons, overrides, lm,
                               ppl_attacks if lm else (), seed, batch_size, progress, textattack, textattack_examples,
                               preset, neighbors, data_dir))
    report = {"title": title or f"advviz reproduction report: {dataset}/{split}", "dataset": dataset, "split": split,
              "n": len(sub), "split_size": len(ds), "attack": attack, "epsilons": epsilons, "overrides": overrides,
              "textattack": [f"textattack:{r}" for r in textattack],
              "seed": seed, "lm": str(lm_dir) if lm_dir else None,
              "lm_held_out_perplexity": (lm.metrics or {}).get("held_out_perplexity") if lm else None,
              "rows": rows, "seed_groups": seed_groups(rows)}
    if out_md is not None:
        write_report(report, out_md, overwrite)
    return report


def check_outputs(out_md: str | os.PathLike, dirs, dataset: str | None, data_dir=None,
                  lm_dir: str | os.PathLike | None = None, overwrite: bool = False) -> None:
    """``out_md`` and the JSON beside it may be written (:mod:`advviz.storage.outputs`): neither is
    an input (a checkpoint, the language model, the data set) nor a file advviz did not write."""
    guard = Outputs(overwrite, checkpoints=dirs, data=[(dataset, data_dir)], other=[(lm_dir, "the language model")])
    guard.file(out_md, "--out")
    guard.file(Path(out_md).with_suffix(".json"), "--out (JSON)", beside=out_md)


def _mean_std(values: list) -> dict:
    """Mean and sample standard deviation (ddof 1) of the values that are numbers."""
    xs = [float(v) for v in values if isinstance(v, (int, float))]
    return {"mean": statistics.fmean(xs) if xs else None, "std": statistics.stdev(xs) if len(xs) > 1 else None}


def seed_groups(rows: list[dict]) -> list[dict]:
    """Rows with the same settings and different training seeds, averaged: one dict per group of
    two or more seeds, in the order the groups first appear."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("settings") is not None and r.get("train_seed") is not None:
            groups.setdefault(r["settings"], []).append(r)
    out = []
    kept = {k: v for k, v in groups.items() if len({r["train_seed"] for r in v}) >= 2}
    differs = _differing_settings(kept, key=lambda settings: (kept[settings][0]["arch"], kept[settings][0]["method"]))
    for settings, members in kept.items():
        first = members[0]
        attacks = []
        for j, a in enumerate(first["attacks"]):
            same = [r["attacks"][j] for r in members if len(r["attacks"]) > j]
            attacks.append({"epsilon": a["epsilon"],
                            **{k: _mean_std([x[k] for x in same]) for k in ("accuracy", "cosine", "euclidean",
                                                                             "flip_rate")}})
        discrete = []
        for j, a in enumerate(first.get("discrete") or []):
            same = [r["discrete"][j] for r in members if len(r.get("discrete") or []) > j]
            discrete.append({"name": a["name"], "n": a["n"], **{k: _mean_std([x[k] for x in same]) for k in DISCRETE_MEANS}})
        out.append({"arch": first["arch"], "method": first["method"], "differs": differs[settings],
                    "trained_on": first["trained_on"],
                    "note": "; ".join(sorted({r["note"] for r in members if r.get("note")})),
                    "seeds": sorted(r["train_seed"] for r in members), "checkpoints": [r["name"] for r in members],
                    "dev_accuracy_at_training": _mean_std([r.get("dev_accuracy_at_training") for r in members]),
                    "clean_accuracy": _mean_std([r["clean_accuracy"] for r in members]), "attacks": attacks,
                    "discrete": discrete})
    return out


# --------------------------------------------------------------------------------------------
# rendering


def _flat(d, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _differing_settings(groups: dict, key) -> dict[str, dict]:
    """For each group's settings string, the settings in which it differs from the other groups of the
    same arch and method (``{"method.carl_start": "67%"}``): what tells "carl" from "carl" in a table
    of an ablation. Settings that are not JSON (hand-made rows) differ in nothing nameable."""
    flat = {}
    for s in groups:
        try:
            flat[s] = _flat(json.loads(s))
        except (TypeError, ValueError):
            flat[s] = {}
    out = {}
    for s in groups:
        peers = [t for t in groups if t != s and key(t) == key(s)]
        names = sorted({k for t in peers for k in set(flat[s]) | set(flat[t]) if flat[s].get(k) != flat[t].get(k)})
        out[s] = {k: flat[s].get(k) for k in names}
    return out


def _f(v, digits=4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _pm(ms: dict, digits: int = 4) -> str:
    """'mean ± std' (or the mean alone)."""
    if ms.get("mean") is None:
        return "–"
    return _f(ms["mean"], digits) + (f" ± {ms['std']:.{digits}f}" if ms.get("std") is not None else "")


def _differs(g: dict) -> str:
    """' (carl_start 67%)': the settings that tell a seed group from the others of its method."""
    parts = [f"{name.rsplit('.', 1)[-1]} {value}" for name, value in (g.get("differs") or {}).items()]
    return f" ({', '.join(parts)})" if parts else ""


def _method(r: dict) -> str:
    """The method as a table shows it: a CARL run whose L_D never trained says so (it is FreeLB)."""
    name = r.get("method") or "–"
    if r.get("note"):
        return f"{name} (**{r['note']}**)"
    if r.get("ld_steps"):
        return f"{name} (L_D {r['ld_steps']} steps)"
    return name


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_f(c) if not isinstance(c, str) else c for c in r) + " |" for r in rows]
    return out + [""]


def render_markdown(report: dict) -> str:
    rows, eps = report["rows"], report["epsilons"]
    lines = [f"## {report['title']}", "",
             f"{report['n']} examples of {report['dataset']}/{report['split']} (of {report['split_size']}); "
             f"attack `{report['attack']}` {report['overrides'] or ''} at ε ∈ {eps}; seed {report['seed']}.", ""]
    lines += ["### Clean accuracy, size and cost (CARL Tables 2 and 7, SPGD Table 3)", ""]
    lines += _table(["checkpoint", "arch", "method", "clean acc", "parameters", "train s", "attack eval s"],
                    [[r["name"], r["arch"] or "–", _method(r), r["clean_accuracy"], f"{r['parameters']:,}",
                      _f(r["train_seconds"], 1), _f(r["attack_seconds"], 1)] for r in rows])
    lines += [f"### Accuracy under {report['attack']} (CARL Table 5)", ""]
    lines += _table(["checkpoint"] + [f"ε={e:g}" for e in eps] + [f"flip ε={eps[-1]:g}" if eps else "flip"],
                    [[r["name"]] + [a["accuracy"] for a in r["attacks"]] +
                     [r["attacks"][-1]["flip_rate"] if r["attacks"] else None] for r in rows])
    lines += ["### Original vs adversarial sentence representations (CARL Table 4)", ""]
    lines += _table(["checkpoint"] + [f"cosine ε={e:g}" for e in eps] + [f"Euclidean ε={e:g}" for e in eps],
                    [[r["name"]] + [a["cosine"] for a in r["attacks"]] + [a["euclidean"] for a in r["attacks"]]
                     for r in rows])
    if report.get("seed_groups"):
        lines += ["### Mean ± standard deviation over training seeds (the papers average three)", ""]
        lines += _table(["arch", "method", "seeds", "dev acc (training)", "clean acc"]
                        + [f"acc ε={e:g}" for e in eps] + [f"cosine ε={e:g}" for e in eps]
                        + [f"Euclidean ε={e:g}" for e in eps],
                        [[g["arch"] or "–", _method(g) + _differs(g), ", ".join(map(str, g["seeds"])),
                          _pm(g["dev_accuracy_at_training"]), _pm(g["clean_accuracy"])]
                         + [_pm(a["accuracy"]) for a in g["attacks"]] + [_pm(a["cosine"]) for a in g["attacks"]]
                         + [_pm(a["euclidean"]) for a in g["attacks"]] for g in report["seed_groups"]])
    if any(r.get("discrete") for r in rows):
        lines += _discrete_tables(report)
    if any(r["perplexity"] for r in rows):
        lm_note = f" (LM held-out perplexity {_f(report['lm_held_out_perplexity'], 2)})" \
            if report.get("lm_held_out_perplexity") else ""
        lines += [f"### Perplexity of discretized adversarial text (SPGD Table 1){lm_note}", ""]
        lines += ["`moved_to`: each perturbed token replaced by the neighbour it moved towards; `nearest`: by "
                  "the vocabulary entry nearest to the perturbed embedding.", ""]
        lines += _table(["checkpoint", "attack", "original ppl", "adversarial ppl", "gap (moved_to)",
                         "changed/text", "gap (nearest)", "changed/text (nearest)", "adv acc"],
                        [[r["name"], p["attack"], _f(p["original_perplexity"], 2), _f(p["adversarial_perplexity"], 2),
                          _f(p["gap"], 2), _f(p["changed_tokens_per_text"], 2), _f(p["nearest_gap"], 2),
                          _f(p["nearest_changed_tokens_per_text"], 2), p["adv_accuracy"]]
                         for r in rows for p in r["perplexity"]])
    return "\n".join(lines)


def _discrete_tables(report: dict) -> list[str]:
    rows = [r for r in report["rows"] if r.get("discrete")]
    n = rows[0]["discrete"][0]["n"]
    lines = ["### Discrete attacks run by TextAttack (TextDefender's columns)", "",
             f"Each example attacked against its gold label ({n} examples; skipped = already misclassified). "
             "Success rate = succeeded / (succeeded + failed); perturbed words: share of the words changed, over "
             "the successful attacks.", ""]
    variants = {a["name"]: a["variant"] for r in rows for a in r["discrete"] if a.get("variant")}
    lines += [f"`{k}`: {v}." for k, v in variants.items()] + ([""] if variants else [])
    lines += _table(["checkpoint", "method", "recipe", "clean acc", "acc under attack", "success rate", "queries",
                     "perturbed words", "examples/s"],
                    [[r["name"], _method(r), a["name"], a["clean_accuracy"], a["accuracy"], a["attack_success_rate"],
                      _f(a["mean_queries"], 1), a["perturbed_word_share"], _f(a["examples_per_second"], 2)]
                     for r in rows for a in r["discrete"]])
    groups = [g for g in report.get("seed_groups") or [] if g.get("discrete")]
    if groups:
        lines += ["Mean ± standard deviation over training seeds:", ""]
        lines += _table(["arch", "method", "seeds", "recipe", "clean acc", "acc under attack", "success rate",
                         "queries", "perturbed words"],
                        [[g["arch"] or "–", _method(g) + _differs(g), ", ".join(map(str, g["seeds"])), a["name"],
                          _pm(a["clean_accuracy"]), _pm(a["accuracy"]), _pm(a["attack_success_rate"]),
                          _pm(a["mean_queries"], 1), _pm(a["perturbed_word_share"])]
                         for g in groups for a in g["discrete"]])
    return lines


def write_report(report: dict, out_md: str | os.PathLike, overwrite: bool = False) -> tuple[Path, Path]:
    out_md = Path(out_md)
    out_json = out_md.with_suffix(".json")
    write_output(out_md, lambda tmp: tmp.write_text(render_markdown(report) + "\n", encoding="utf-8"),
                 overwrite=overwrite)
    write_output(out_json, lambda tmp: tmp.write_text(dumps(report, indent=2) + "\n", encoding="utf-8"),
                 "--out (JSON)", beside=out_md)
    return out_md, out_json
