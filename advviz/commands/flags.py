"""Command-line flags generated from the configuration dataclasses (``advviz/config.py``).

A command that trains or attacks takes the flags of the methods its command line names
(``--method`` for ``train``, ``--attack`` for the analysis commands): the parser is built for
them, so ``advviz train --method spgd --help`` shows SPGD's own flags and defaults, and a flag of
a method that was not chosen is refused with one line naming it (``refuse_unknown``).
"""

from __future__ import annotations

import argparse

from ..config import (
    COMMAND_DEFAULTS, FAMILY_PRESETS, PRESETS, add_flags, all_flags, arch_default, default_attack, flag_fields,
    flag_of, given, method_preset,
)
from ..errors import AdvvizError
from ..limits import check_count
from ..methods import METHODS, get_method, resolve_method
from ..storage.outputs import OVERWRITE_HELP
from ..substitutions import DEFAULT_FILE, NEIGHBORS_FLAG

#: flag that names the methods on each command's line, and its default
METHOD_FLAG = {"train": ("--method", "baseline"), "eval": ("--attack", None), "perplexity": ("--attack", None),
               "project": ("--attack", None), "words": ("--attack", None),
               **{c: ("--attack", default_attack(c)) for c in ("inspect", "report", "reconstruct", "augment")}}


def peek(argv: list[str], flag: str) -> list[str]:
    """Every value given to ``flag`` (``--flag X`` or ``--flag=X``), comma lists split, ``@ε`` kept."""
    out = []
    for i, a in enumerate(argv):
        v = None
        if a == flag and i + 1 < len(argv):
            v = argv[i + 1]
        elif a.startswith(flag + "="):
            v = a.split("=", 1)[1]
        if v is not None:
            out += [x.strip() for x in v.split(",") if x.strip()]
    return out


def command_of(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def named_methods(argv: list[str], command: str) -> list[str]:
    """The known methods this command line names for ``command`` (its default when it names none)."""
    if command not in METHOD_FLAG or command_of(argv) != command:
        flag, default = METHOD_FLAG.get(command, (None, None))
        return [default] if default else []
    flag, default = METHOD_FLAG[command]
    names = [n.partition("@")[0] for n in peek(argv, flag)] or ([default] if default else [])
    if command == "report":
        names += [n.partition("@")[0] for n in (peek(argv, "--ppl-attacks") or COMMAND_DEFAULTS["ppl_attacks"])]
    return list(dict.fromkeys(n for n in names if n in METHODS))


def add_method_flags(parser: argparse.ArgumentParser, names: list[str], arch: str | None = None,
                     title: str | None = None) -> None:
    """The flags of the methods ``names`` (a flag several of them share appears once; its help
    gives each one's default, after the family preset of ``arch`` when it is known)."""
    if not names:
        return
    g = parser.add_argument_group(title or f"{', '.join(names)} hyperparameters "
                                           f"(advviz train --method NAME --help lists another method's)")
    seen: dict[str, list[str]] = {}
    fields = {}
    for n in names:
        for f in flag_fields(get_method(n).Config):
            seen.setdefault(f.name, []).append(n)
            fields.setdefault(f.name, f)

    defaults, notes = {}, {}
    for name, owners in seen.items():
        vals = [_default(o, name, arch) for o in owners]
        if len(owners) == 1 or len(set(map(str, vals))) == 1:
            defaults[name] = vals[0]
        else:
            defaults[name] = None
            notes[name] = " (default: " + ", ".join(f"{o} {v}" for o, v in zip(owners, vals)) + ")"
        paper = getattr(get_method(owners[0]).Config(), name)
        if arch and str(paper) != str(vals[0]) and len(owners) == 1:
            notes[name] = f" for --arch {arch} (--preset paper: {paper})"
    # a flag the command already defines for every reader (--neighbors: add_neighbors_flag) is that one flag
    defined = set(getattr(parser, "_option_string_actions", {}))
    add_flags(g, [f for f in fields.values() if flag_of(f) not in defined], defaults, notes)


def _default(method: str, name: str, arch: str | None):
    return resolve_method(method, arch)[name]


def method_values(args: argparse.Namespace, names: list[str]) -> dict:
    """The method flags the user gave (field name -> value), over the methods ``names``. A count
    beyond its documented maximum (``limits.MAXIMA``) is one line here, before any model is
    loaded or evaluated (the config dataclasses refuse it again wherever they are built)."""
    out = {}
    for n in names:
        out.update(given(args, get_method(n).Config))
    for f in {f.name: f for n in names for f in flag_fields(get_method(n).Config)}.values():
        check_count(f.name, out.get(f.name), flag_of(f))
    return out


def for_method(name: str, values: dict) -> dict:
    """The values that are settings of method ``name`` (multi-attack commands share one set)."""
    fields = {f.name for f in flag_fields(get_method(name).Config)}
    return {k: v for k, v in values.items() if k in fields}


def paper_or_family(args: argparse.Namespace, attack: str, values: dict) -> dict:
    """With ``--preset paper``, the papers' values under the user's (analysis commands); the rule
    is :func:`analysis.attacks.resolved_overrides`, which the report's attacks follow too."""
    from ..analysis.attacks import resolved_overrides  # deferred: `advviz --help` must not load it

    return resolved_overrides(attack, values, getattr(args, "preset", None) or "family")


def add_preset_flag(parser) -> None:
    parser.add_argument("--preset", default=None, choices=list(PRESETS),
                        help="attack defaults: scaled for the attacked model's family (default) or the papers' values")


def add_neighbors_flag(parser, what: str) -> None:
    """``--neighbors FILE``: the word-substitution sets (:mod:`advviz.substitutions`), one flag for
    every reader of them (``what`` names this command's readers)."""
    parser.add_argument(NEIGHBORS_FLAG, default=None, metavar="FILE",
                        help=f"{what}: the word-substitution sets, a JSON object word -> list of substitutes "
                             f"(gzip or plain; default {DEFAULT_FILE} from the data directory)")


def add_overwrite_flag(parser) -> None:
    """``--overwrite`` of every command that writes output files (the rule: :mod:`advviz.storage.outputs`)."""
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


def refuse_unknown(unknown: list[str], command: str | None, names: list[str]) -> list[str]:
    """One line for a flag of a method that was not chosen; returns the tokens that are not method
    flags (argparse reports those as usual)."""
    owners = all_flags((n, cls.Config) for n, cls in METHODS.items())
    for tok in unknown:
        flag = tok.split("=", 1)[0]
        if flag in owners:
            chosen = ", ".join(names) or "none"
            what = METHOD_FLAG.get(command, ("--method", None))[0]
            if not names:
                raise AdvvizError(f"{flag} is a setting of {', '.join(owners[flag])}: give {what} NAME first")
            raise AdvvizError(f"{flag} is not a setting of {what} {chosen} (it belongs to {', '.join(owners[flag])}); "
                              f"`advviz {command} {what} {names[0]} --help` lists its flags")
    return unknown


def family_notes(cls, names=("hidden_size", "embedding_dim", "mlp_hidden", "dropout", "max_length")) -> dict:
    """Help notes giving what None means per family, e.g. '(default: lstm 256, bigru 200)'."""
    out = {}
    for n in names:
        vals = [(a, arch_default(a, n)) for a in ("lstm", "bigru", "transformers")]
        vals = [(a, v) for a, v in vals if v is not None]
        if vals:
            out[n] = " (default: " + ", ".join(f"{a} {v}" for a, v in vals) + ")"
    return out


def method_defaults_table() -> str:
    """The epilog of the training/attack commands: every method's flags and defaults."""
    lines = ["method defaults (the papers'; --preset family, the default, rescales ε per model family):"]
    for name, cls in METHODS.items():
        cfg = cls.Config()
        parts = [f"{flag_of(f)} {getattr(cfg, f.name)}" for f in flag_fields(cls.Config)]
        lines.append(f"  {name:10s} {', '.join(parts) or '(no hyperparameters)'}")
    lines.append("\nfamily presets (--preset family): " + "; ".join(
        f"{fam}: " + ", ".join(f"{m} " + " ".join(f"{'ε' if k == 'epsilon' else '--' + k.replace('_', '-')} {v}"
                                                  for k, v in values.items()) for m, values in methods.items())
        for fam, methods in FAMILY_PRESETS.items()))
    paper = ", ".join(f"{m} {get_method(m).Config().epsilon:g}" for m in ("advt", "iadvt", "spgd"))
    carl, rnn = get_method("carl").Config().carl_start, method_preset("carl", "lstm").get("carl_start")
    lines.append(f"The papers' ε ({paper}) were set for 256-d embeddings over ~230-token IMDB\n"
                 "reviews and collapse a GloVe-50d LSTM on SST-2 sentences (docs/results.md §3.1). CARL's\n"
                 f"--carl-start is relative to the run (default {carl} of its optimiser steps, ≈ the paper's share; "
                 f"{rnn} on the\nrecurrent families, docs/results.md §9; 1ep, 217 or 'paper').")
    return "\n".join(lines)


