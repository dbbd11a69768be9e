"""``advviz`` command line. Every user error ends as one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from .errors import AdvvizError


# --------------------------------------------------------------------------------------------
# flags generated from config dataclasses (one place for each default)


def method_flag_fields() -> dict[str, dataclasses.Field]:
    """flag -> field, over every registered method's config (shared flags appear once)."""
    from .methods import METHODS

    out: dict[str, dataclasses.Field] = {}
    for cls in METHODS.values():
        for f in dataclasses.fields(cls.Config):
            flag = f.metadata.get("flag")
            if flag and flag not in out:
                out[flag] = f
    return out


def method_defaults_table() -> str:
    from .methods import METHODS

    lines = ["method defaults:"]
    for name, cls in METHODS.items():
        cfg = cls.Config()
        parts = [f"{f.metadata['flag']} {getattr(cfg, f.name)}" for f in dataclasses.fields(cls.Config)
                 if f.metadata.get("flag")]
        lines.append(f"  {name:10s} {', '.join(parts) or '(no hyperparameters)'}")
    lines.append("\nThe papers' ε (advt 5, iadvt 15, spgd 25) were set for 256-d embeddings over ~230-token IMDB\n"
                 "reviews; ε bounds the whole sequence, so for GloVe-50d on SST-2 sentences about 0.08·ε works\n"
                 "(advt 0.4, iadvt 0.4, spgd 2.0; docs/results.md §3.1). CARL's --carl-start is relative to the\n"
                 "run (default 33% of its optimiser steps; 1ep, 217 or 'paper' also work); a start that would\n"
                 "leave L_D off for the whole run is refused before training.")
    return "\n".join(lines)


def add_method_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("method / attack hyperparameters (default: the method's own, see below)")
    for flag, f in method_flag_fields().items():
        kind = f.metadata.get("type") or _field_type(f)
        if kind is bool:
            g.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                           help=f.metadata["help"].replace("%", "%%"))
        else:
            g.add_argument(flag, dest=f.name, type=kind, default=None, choices=f.metadata.get("choices"),
                           help=f.metadata["help"].replace("%", "%%"))


def _field_type(f: dataclasses.Field):
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    for name, typ in (("bool", bool), ("int", int), ("float", float)):
        if t.startswith(name):
            return typ
    return str


def method_overrides(args) -> dict:
    return {f.name: getattr(args, f.name, None) for f in method_flag_fields().values()}


# --------------------------------------------------------------------------------------------
# commands


def cmd_data_list(args) -> int:
    from .data import default_data_dir, list_datasets

    rows = list_datasets(args.data_dir)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"data directory: {args.data_dir or default_data_dir()}")
    for r in rows:
        sizes = ", ".join(f"{k} {v:,}" for k, v in r["sizes"].items()) or "-"
        derived = f" (derived: {', '.join(r['derived'])})" if r.get("derived") else ""
        print(f"{r['name']:10s} {sizes}{derived}")
        print(f"{'':10s} labels: {', '.join(r['labels'])}; found: {r['found']}")
    return 0


def cmd_train(args) -> int:
    from .methods import build_method
    from .models import ModelOptions
    from .train import TrainConfig, Trainer

    try:
        cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
        opts = ModelOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ModelOptions)})
    except ValueError as e:
        raise AdvvizError(str(e)) from None
    method = build_method(cfg.method, method_overrides(args))
    result = Trainer(cfg, method, opts, progress=not args.quiet).fit()
    m = result.metrics
    if not result.is_main:
        return 0
    print(f"best dev accuracy {m['dev_accuracy']:.4f} at step {m['steps']}; checkpoint: {result.out_dir}")
    return 0


def check_max_examples(n, flag: str = "--max-examples") -> None:
    if n is not None and n <= 0:
        raise AdvvizError(f"{flag} must be positive, got {n} (leave it out to use every example)")


def cmd_eval(args) -> int:
    from .api import load

    check_max_examples(args.max_examples)
    model = load(args.checkpoint)
    name = args.dataset or model.config["data"]["name"]
    res = model.evaluate(name, args.split, args.max_examples, args.data_dir)
    res = {"model": str(args.checkpoint), "dataset": name, "split": args.split, **res}
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{name}/{args.split}: accuracy {res['accuracy']:.4f}  macro-F1 {res['macro_f1']:.4f}  "
              f"loss {res['loss']:.4f}  n {res['n']}")
    return 0


# --------------------------------------------------------------------------------------------
# parser


def _data_flags(p):
    p.add_argument("--data-dir", default=None, help="folder of the *.tsv.gz files (env ADVVIZ_DATA_DIR; "
                                                    "default ../shared/data)")
    p.add_argument("--text-col", default=None, help="text column of a local file (auto-detected)")
    p.add_argument("--label-col", default=None, help="label column of a local file (auto-detected)")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .methods import METHODS
    from .commands import COMMAND_MODULES

    parser = argparse.ArgumentParser(prog="advviz", description="Adversarial training in embedding space, visualised.")
    parser.add_argument("--version", action="version", version=f"advviz {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="data sets")
    dsub = p.add_subparsers(dest="data_command", required=True)
    pl = dsub.add_parser("list", help="each known data set, where it was found, sizes and labels")
    pl.add_argument("--data-dir", default=None)
    pl.add_argument("--json", action="store_true")
    pl.set_defaults(func=cmd_data_list)

    p = sub.add_parser("train", help="train a classifier", epilog=method_defaults_table(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="sst2-sent", help="a known name (advviz data list) or a .csv/.tsv/.jsonl file")
    p.add_argument("--arch", default="lstm", help="lstm | bigru | minilm | a Hugging Face encoder id or path")
    p.add_argument("--method", default="baseline", choices=list(METHODS))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-train", type=int, default=None, help="train on a seeded subset of N examples")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--max-eval", type=int, default=None, help="evaluate on a seeded subset of dev")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=None, help="default: 1e-3 for lstm/bigru, 5e-5 for transformers")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--warmup", type=float, default=0.1, help="transformers: share of steps for linear warm-up")
    p.add_argument("--grad-clip", type=float, default=None, help="default: 4.0 for lstm/bigru, 1.0 for transformers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="checkpoint directory: new, empty, or advviz's own run "
                                               "(default models/ARCH-DATASET-METHOD-sSEED)")
    p.add_argument("--mixed-precision", default="no", choices=["no", "fp16", "bf16"])
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=None, help="steps between evaluations (default: each epoch)")
    p.add_argument("--save-every", type=int, default=None,
                   help="steps between resume states (also saved at each epoch end and on Ctrl-C)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last saved state")
    p.add_argument("--overwrite", action="store_true",
                   help="replace advviz's own run in --out (a directory holding anything else is never replaced)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _data_flags(p)
    g = p.add_argument_group("model")
    g.add_argument("--hidden-size", type=int, default=None, help="RNN hidden size (lstm 256, bigru 200)")
    g.add_argument("--embedding-dim", type=int, default=None, help="bigru embedding size (200); lstm uses GloVe-50d")
    g.add_argument("--mlp-hidden", type=int, default=None, help="RNN classifier MLP width (lstm 30, bigru 256; 0: none)")
    g.add_argument("--dropout", type=float, default=None, help="RNN 0.5, transformer head 0.1")
    g.add_argument("--max-length", type=int, default=None, help="tokens per text (RNN 400, transformers 128)")
    g.add_argument("--max-vocab", type=int, default=50000)
    g.add_argument("--min-freq", type=int, default=1)
    g.add_argument("--char", action="store_true", help="bigru: character-level tokens")
    add_method_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--dataset", default=None, help="default: the data set it was trained on")
    p.add_argument("--split", default="dev")
    p.add_argument("--max-examples", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bars (also implied by --json)")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=cmd_eval)
    # Commands that live beside the features they drive; each module adds its sub-parsers
    # (and may extend ``eval``'s parser, passed as ``eval_parser``).
    for mod in COMMAND_MODULES:
        mod.add_parsers(sub, eval_parser=p)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        return args.func(args) or 0
    except AdvvizError as e:
        print(f"advviz: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("advviz: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
