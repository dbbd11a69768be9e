"""The one configuration source of advviz.

Every setting — a method's hyperparameters (``methods/*.py``), the training run (``TrainConfig``,
``train.py``), the model family's options (``ModelOptions``, ``models/__init__.py``), the language
model (``lm.py``) — is a field of a frozen dataclass declared with :func:`hp`, whose metadata holds
its flag, help and choices. Its default is written once, on the field. From those fields alone:

    add_flags(parser, Config)          the command-line flags (default None: "not given")
    given(args, Config)                the values the user gave, by field name
    to_argv(Config, values)            a command line (the app's background jobs)
    app/appkit/forms.py                the app's widgets (the same metadata)

What a ``None`` default means for a model family (``lr``, ``hidden_size``, ...) and which flags a
family uses are the tables below, and so are the per-family method presets: the papers' ε were
set for 256-d unit-variance embeddings over ~230-token IMDB reviews, and on a GloVe-50d LSTM over
20-word SST-2 sentences they collapse training to the majority class (docs/results.md §3.1).
``--preset family`` (default) gives each family ε scaled for its embeddings; ``--preset paper``
the papers' own values. A checkpoint records which preset it was trained with.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable

from .errors import AdvvizError
from .limits import count_problem, maximum

# --------------------------------------------------------------------------------------------
# fields


def hp(default, help: str, flag: str | None = None, choices: Iterable | None = None, type: type | None = None,
       **kw) -> Any:
    """A configuration field that is also a command-line flag (``--field-name`` unless ``flag``).
    ``repeat=True``: the flag may be given several times; the field holds a tuple of the values."""
    meta = {"help": help, "flag": flag, **kw}
    if choices is not None:
        meta["choices"] = list(choices)
    if type is not None:
        meta["type"] = type
    return field(default=default, metadata=meta)


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def flag_fields(cls) -> list[dataclasses.Field]:
    """The fields of a config class that are flags (declared with :func:`hp`)."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def field_type(f: dataclasses.Field) -> type:
    """bool / int / float / str from the field's annotation (``int | None`` counts as int)."""
    if "type" in f.metadata:
        return f.metadata["type"]
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    for name, typ in (("bool", bool), ("int", int), ("float", float)):
        if t.startswith(name):
            return typ
    return str


@dataclass(frozen=True)
class Config:
    """Base of every configuration: validated in ``__post_init__`` (raise ``ValueError``). A
    subclass's ``__post_init__`` calls this one first: it holds every count to its documented
    maximum (``limits.MAXIMA``, by field name), so each config that has a ``steps``, ``k``,
    ``epochs``... field enforces the same bound wherever it is built (flags, app, Python)."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            problem = count_problem(f.name, getattr(self, f.name), flag_of(f))
            if problem:
                raise ValueError(problem)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any]) -> "Config":
        """Build from flag values, ignoring ``None`` (not given). A name that is not a field of
        this config is refused: a flag the method does not have is never silently dropped."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k, v in overrides.items() if v is not None and k not in names)
        if unknown:
            raise ValueError(f"{', '.join(_flag(k) for k in unknown)} is not a setting of {cls.__name__}")
        return cls(**{k: v for k, v in overrides.items() if v is not None})


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# --------------------------------------------------------------------------------------------
# model families: what None means, which flags a family takes, the method presets

RNN_ARCHS = ("lstm", "bigru")
#: ModelOptions defaults per architecture (None on the field means "this value").
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    # SPGD App. B / Sato et al.: uni-LSTM, 30-unit MLP; GloVe-50d fixes the embedding size
    "lstm": {"hidden_size": 256, "mlp_hidden": 30, "dropout": 0.5, "max_length": 400},
    # Bělohlávek et al. §5.3 (MR setting): BiGRU 200, embeddings 200, MLP 256
    "bigru": {"hidden_size": 200, "embedding_dim": 200, "mlp_hidden": 256, "dropout": 0.5, "max_length": 400},
    # any Hugging Face encoder: dropout on the [CLS] head
    "hf": {"dropout": 0.1, "max_length": 128},
}
#: TrainConfig defaults per family: Adam 1e-3 and clip 4 (SPGD App. B) for RNNs, 5e-5 and 1 for transformers.
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {"rnn": {"lr": 1e-3, "grad_clip": 4.0},
                                             "hf": {"lr": 5e-5, "grad_clip": 1.0}}
#: Flags only some families use (every other flag applies to all).
FAMILY_ONLY: dict[str, tuple[str, ...]] = {
    "hidden_size": RNN_ARCHS, "mlp_hidden": RNN_ARCHS, "max_vocab": RNN_ARCHS, "min_freq": RNN_ARCHS,
    "embedding_dim": ("bigru",), "char": ("bigru",), "warmup": ("hf",),
}
PRESETS = ("family", "paper")
#: ``--preset family``: method defaults scaled to the family's embeddings and texts. ε bounds the
#: whole sequence, so its per-token share goes like ε/√L; keeping it at the papers' ratio to the
#: embedding-row norm gives ε·√(L/230)·‖row‖/16 (docs/results.md §3.1). lstm: measured (GloVe-50d,
#: ‖row‖ ≈ 4.5, 20-token SST-2: about 0.08·ε; iAdvT at AdvT's value since its ε bounds ‖δ‖ too,
#: FGSM's ε is per coordinate; VAT and UAE bound ‖r‖₂ per sequence as AdvT does, from the same
#: paper ε 5, so they take AdvT's values — docs/results.md §8 measures them). bigru (random
#: 200-d rows, ‖row‖ ≈ 14) and hf (MiniLM's ‖row‖ ≈ 1.3, ~25 WordPieces) follow the same rule, not yet measured. Methods and fields not listed keep their
#: own defaults (FreeLB/CARL/RAR already use the CARL paper's SST-2 row, PGD CARL's ε).
#: CARL on the recurrent families starts L_D at 67 % of the run instead of the paper's ≈ 30 %
#: (``carl.py``, "Warm start"; docs/results.md §9: on lstm/sst2-sent, 3 seeds, it recovers 2.8 of
#: the 3.8 points of dev accuracy CARL costs against FreeLB and keeps all of its k-PGD gain at ε 1;
#: bigru is the same recurrent encoder, not measured).
_RNN_CARL = {"carl_start": "67%"}
FAMILY_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "lstm": {"advt": {"epsilon": 0.4}, "iadvt": {"epsilon": 0.4}, "spgd": {"epsilon": 2.0},
             "fgsm": {"epsilon": 0.01}, "vat": {"epsilon": 0.4}, "uae": {"epsilon": 0.4},
             "carl": _RNN_CARL, "carl+rar": _RNN_CARL},
    "bigru": {"advt": {"epsilon": 1.3}, "iadvt": {"epsilon": 1.3}, "spgd": {"epsilon": 6.5},
              "fgsm": {"epsilon": 0.02}, "vat": {"epsilon": 1.3}, "uae": {"epsilon": 1.3},
              "carl": _RNN_CARL, "carl+rar": _RNN_CARL},
    "hf": {"advt": {"epsilon": 0.13}, "iadvt": {"epsilon": 0.13}, "spgd": {"epsilon": 0.7},
           "fgsm": {"epsilon": 0.0015}, "vat": {"epsilon": 0.13}, "uae": {"epsilon": 0.13},
           # ASCC's reference steps its BERT weights at bert_w_optm_lr 1 (10 for its word models)
           "ascc": {"step_size": 1.0}},
}


#: Every command default that is not a setting's field, written once: the argparse defaults and
#: help texts of ``advviz/commands``, ``commands.flags.METHOD_FLAG``, the app's pages and the
#: library functions' defaults read it. ``attack``: the attack a command uses when none is named
#: (k-PGD for the CARL/RAR paper's tables and reconstructions, SPGD to look at and augment with);
#: ``ppl_attacks``: the perplexity table's attacks (the SPGD paper's three); TextAttack's
#: queries are batched by ``textattack_batch_size``.
COMMAND_DEFAULTS: dict[str, Any] = {
    "attack": {"inspect": "spgd", "augment": "spgd", "overlap": "spgd", "app": "spgd",
               "report": "pgd", "reconstruct": "pgd"},
    "ppl_attacks": ("advt", "iadvt", "spgd"),
    "report_eps": (0.02, 0.075, 0.1),  # advviz report's robustness table: CARL's Table 5
    "textattack_batch_size": 64,
}


def default_attack(command: str) -> str:
    """The attack ``command`` uses when none is named (``COMMAND_DEFAULTS``)."""
    return COMMAND_DEFAULTS["attack"][command]


def family_of(arch: str) -> str:
    """``lstm`` / ``bigru`` / ``hf`` (any other name is a Hugging Face encoder)."""
    return arch if arch in RNN_ARCHS else "hf"


def is_rnn(arch: str) -> bool:
    return arch in RNN_ARCHS


def arch_default(arch: str, name: str):
    """What ``None`` means for ModelOptions field ``name`` on this architecture."""
    return ARCH_DEFAULTS[family_of(arch)].get(name)


def train_default(arch: str, name: str):
    """What ``None`` means for TrainConfig field ``name`` (lr, grad_clip) on this architecture."""
    return TRAIN_DEFAULTS["rnn" if is_rnn(arch) else "hf"][name]


def unused_by(arch: str, names: Iterable[str]) -> list[str]:
    """Of these given field names, those the architecture's family does not use."""
    fam = family_of(arch)
    return [n for n in names if n in FAMILY_ONLY and fam not in FAMILY_ONLY[n]]


def method_preset(method: str, arch: str | None, preset: str = "family") -> dict[str, Any]:
    """The values a preset sets for a method on an architecture (empty for ``paper``)."""
    if preset not in PRESETS:
        raise AdvvizError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    if preset == "paper" or arch is None:
        return {}
    return dict(FAMILY_PRESETS[family_of(arch)].get(method, {}))


# --------------------------------------------------------------------------------------------
# the one validation of a run's family flags (the resolvers: methods.resolve_method, train.resolve_training)


def refuse_unused_by_family(arch: str, values: dict) -> None:
    """One line for a model/training setting (given, not None) the architecture's family does not use."""
    bad = unused_by(arch, [k for k, v in values.items() if v is not None])
    if bad:
        name = bad[0]
        raise AdvvizError(f"{_flag(name)} does not apply to --arch {arch} (only to {', '.join(FAMILY_ONLY[name])})")


# --------------------------------------------------------------------------------------------
# flags


def _help(f: dataclasses.Field, default, note: str = "") -> str:
    top = maximum(f.name)
    text = f.metadata["help"] + ("" if top is None else f", at most {top:,}")
    shown = "" if default is None or default is False else f" (default: {default})"
    return (text + shown + note).replace("%", "%%")


def add_flags(parser, cls_or_fields, defaults: dict[str, Any] | None = None, notes: dict[str, str] | None = None,
              skip: Iterable[str] = ()) -> None:
    """One flag per :func:`hp` field of a config class (or of a list of fields) on ``parser`` (a
    parser or an argument group). Every flag defaults to None, so :func:`given` sees exactly what
    the user typed; the help shows the field's default (or ``defaults[name]``, e.g. a preset's)."""
    defaults, notes, skip = defaults or {}, notes or {}, set(skip)
    fields = flag_fields(cls_or_fields) if isinstance(cls_or_fields, type) else list(cls_or_fields)
    for f in fields:
        if f.name in skip:
            continue
        shown = defaults.get(f.name, f.default)
        kind = field_type(f)
        helptext = _help(f, shown, notes.get(f.name, ""))
        if kind is bool:
            parser.add_argument(flag_of(f), dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                help=helptext)
        elif f.metadata.get("repeat"):  # a list of values, one per use of the flag
            parser.add_argument(flag_of(f), dest=f.name, action="append", type=kind, default=None,
                                help=helptext + " (repeatable)", metavar=f.metadata.get("metavar"))
        else:
            parser.add_argument(flag_of(f), dest=f.name, type=kind, default=None,
                                choices=f.metadata.get("choices"), help=helptext, metavar=f.metadata.get("metavar"))


def given(args: argparse.Namespace, cls) -> dict[str, Any]:
    """{field name: value} of the flags of ``cls`` the user gave."""
    return {f.name: getattr(args, f.name) for f in flag_fields(cls) if getattr(args, f.name, None) is not None}


def to_argv(cls, values: dict[str, Any]) -> list[str]:
    """The flags that give ``values`` (field name -> value) for config class ``cls``; None skipped."""
    fields = {f.name: f for f in flag_fields(cls)}
    argv: list[str] = []
    for name, v in values.items():
        if v is None:
            continue
        if name not in fields:
            raise AdvvizError(f"{_flag(name)} is not a setting of {cls.__name__}")
        flag = flag_of(fields[name])
        if isinstance(v, bool):
            argv.append(flag if v else "--no-" + flag[2:])
        elif isinstance(v, (list, tuple)):  # a repeatable flag
            for x in v:
                argv += [flag, str(x)]
        else:
            argv += [flag, str(v)]
    return argv


def all_flags(classes: Iterable) -> dict[str, list[str]]:
    """flag -> the names of the config classes (or methods) that have it."""
    out: dict[str, list[str]] = {}
    for owner, cls in classes:
        for f in flag_fields(cls):
            out.setdefault(flag_of(f), []).append(owner)
            if field_type(f) is bool:
                out.setdefault("--no-" + flag_of(f)[2:], []).append(owner)
    return out
