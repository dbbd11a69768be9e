"""``advviz`` command line. Every user error ends as one line on stderr and exit code 2.

Every flag is generated from a configuration dataclass (``advviz/config.py``; the method flags by
``commands/flags.py``), and the parser is built for the methods the command line names, so
``advviz train --method spgd --help`` lists SPGD's own flags and a flag of another method, or one
the model family does not use, is refused with one line. Commands of a feature area live in
``commands/``; this module only assembles the parser and runs the chosen command."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import warnings

from tqdm import tqdm

from .api import load
from .commands import COMMAND_MODULES, flags
from .config import add_flags, given, train_default
from .data import data_dir_search, default_data_dir, hub_available, list_datasets
from .errors import AdvvizError
from .limits import DEFAULT_MAX_DATA_MB, MAX_DATA_MB_ENV, check_max_examples, set_max_data_mb
from .methods import build_method, resolve_method
from .models import ModelOptions
from .storage.jsonio import dumps
from .train import TrainConfig, Trainer, resolve_training
from .version import __version__


# --------------------------------------------------------------------------------------------
# commands


def cmd_data_list(args) -> int:
    rows = list_datasets(args.data_dir)
    if args.json:
        print(dumps(rows, indent=2))
        return 0
    print(f"data directory: {args.data_dir or default_data_dir()}")
    print("looked for in this order:")
    for i, (where, path) in enumerate(data_dir_search(args.data_dir), 1):
        print(f"  {i}. {where:20s} {path}{'' if path.is_dir() else '  (not there)'}")
    hub = "available" if hub_available() else "not installed: pip install 'advviz[hub]'"
    print(f"  then the Hugging Face hub ({hub}); a .csv/.tsv/.jsonl file given by path needs none of these")
    for r in rows:
        sizes = ", ".join(f"{k} {v:,}" for k, v in r["sizes"].items()) or "-"
        derived = f" (derived: {', '.join(r['derived'])})" if r.get("derived") else ""
        print(f"{r['name']:10s} {sizes}{derived}")
        print(f"{'':10s} labels: {', '.join(r['labels'])}; found: {r['found']}")
    return 0


def cmd_train(args) -> int:
    cfg, opts = resolve_training(given(args, TrainConfig), given(args, ModelOptions))
    values = resolve_method(cfg.method, cfg.arch, flags.method_values(args, [cfg.method]), cfg.preset)
    method = build_method(cfg.method, values)
    result = Trainer(cfg, method, opts, progress=not args.quiet).fit()
    m = result.metrics
    if not result.is_main:
        return 0
    print(f"best dev accuracy {m['dev_accuracy']:.4f} at step {m['steps']}; checkpoint: {result.out_dir}")
    return 0


def cmd_eval(args) -> int:
    check_max_examples(args.max_examples)
    model = load(args.checkpoint)
    name = args.dataset or model.config["data"]["name"]
    res = model.evaluate(name, args.split, args.max_examples, args.data_dir)
    res = {"model": str(args.checkpoint), "dataset": name, "split": args.split, **res}
    if args.json:
        print(dumps(res))
    else:
        print(f"{name}/{args.split}: accuracy {res['accuracy']:.4f}  macro-F1 {res['macro_f1']:.4f}  "
              f"loss {res['loss']:.4f}  n {res['n']}")
    return 0


# --------------------------------------------------------------------------------------------
# parser


def _train_parser(sub, argv: list[str]) -> None:
    method = (flags.named_methods(argv, "train") or ["baseline"])[0]
    arch = (flags.peek(argv, "--arch") or [TrainConfig.arch])[-1]
    p = sub.add_parser("train", help="train a classifier", epilog=flags.method_defaults_table(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    notes = {k: f" (default: lstm/bigru {train_default('lstm', k)}, transformers {train_default('minilm', k)})"
             for k in ("lr", "grad_clip")}
    add_flags(p, TrainConfig, notes=notes)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_flags(p.add_argument_group("model (flags a family does not use are refused)"), ModelOptions,
              notes=flags.family_notes(ModelOptions))
    flags.add_method_flags(p, [method], arch, title=f"{method} hyperparameters (advviz train --method NAME "
                                                     f"--help lists another method's)")
    p.set_defaults(func=cmd_train)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for this command line (its method and attack flags are those it names)."""
    argv = list(argv or [])
    parser = argparse.ArgumentParser(prog="advviz", description="Adversarial training in embedding space, visualised.")
    parser.add_argument("--version", action="version", version=f"advviz {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="data sets")
    dsub = p.add_subparsers(dest="data_command", required=True)
    pl = dsub.add_parser("list", help="each known data set, where it was found, sizes and labels")
    pl.add_argument("--data-dir", default=None)
    pl.add_argument("--json", action="store_true")
    pl.set_defaults(func=cmd_data_list)

    _train_parser(sub, argv)

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
        mod.add_parsers(sub, eval_parser=p, argv=argv)
    _add_data_limit(parser)
    return parser


def _add_data_limit(parser: argparse.ArgumentParser) -> None:
    """``--max-data-mb`` on every command: each reads files (data sets, --unlabeled, --augment,
    --input, ...) through one bounded reader (``data._read_bytes``, ``limits.max_data_bytes``)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        parser.add_argument("--max-data-mb", type=float, default=None, metavar="MB",
                            help=f"largest file (or standard input) read, once decompressed, in MB (default "
                                 f"{DEFAULT_MAX_DATA_MB}, or ${MAX_DATA_MB_ENV})")
    for action in subs:
        for child in dict.fromkeys(action.choices.values()):
            _add_data_limit(child)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is (reading, tokenizing, attacking, writing): it stops the
    way Ctrl-C does, so cleanup runs (temporary outputs removed, locks released) and ``main``
    prints one line. ``train`` replaces the handler while it runs (``train._StopFlag``)."""


def _on_sigterm(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM stops at once
    raise Terminated()


def _close_progress_bars() -> None:
    """Close the progress bars a stopped command left open, so that its one line starts a line of
    its own (and no bar is redrawn after it)."""
    for bar in list(getattr(tqdm, "_instances", [])):
        bar.close()


def main(argv: list[str] | None = None) -> int:
    """Run one command line. What it sets for itself (the SIGTERM handler, ``--max-data-mb``) is
    undone on return, so a caller that runs several (tests, the app) sees no trace of it."""
    limit = os.environ.get(MAX_DATA_MB_ENV)
    main_thread = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        return _main(argv)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, old)
        if limit is None:
            os.environ.pop(MAX_DATA_MB_ENV, None)
        else:
            os.environ[MAX_DATA_MB_ENV] = limit


def _main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = flags.command_of(argv)
        try:
            flags.refuse_unknown(unknown, command, flags.named_methods(argv, command))
        except AdvvizError as e:
            return _error(e)
        parser.parse_args(argv)  # argparse's own message for anything else (exits 2)
    # Warnings (torch's, numpy's) are held back while the command runs: one printed before an
    # error would break its single line. They are shown when the command ends, unless it ended with
    # an AdvvizError (what they warned about is then moot).
    held: list = []
    failed = False
    try:
        with warnings.catch_warnings(record=True) as held:
            try:
                # transformers: optional and slow to import
                from transformers.utils import logging as hf_logging

                hf_logging.set_verbosity_error()
                hf_logging.disable_progress_bar()
                if getattr(args, "max_data_mb", None) is not None:
                    set_max_data_mb(args.max_data_mb)
                rc = args.func(args) or 0
                sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
                return rc
            except AdvvizError as e:
                failed = True
                _close_progress_bars()
                return _error(e)
            except KeyboardInterrupt as e:
                failed = True
                _close_progress_bars()
                return _error(AdvvizError(f"stopped by {'SIGTERM' if isinstance(e, Terminated) else 'SIGINT'}"), 130)
            except BrokenPipeError:  # `advviz eval --json | head`: the reader left; no traceback
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                return 141
    finally:
        for w in [] if failed else held:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)


def _error(e: AdvvizError, code: int | None = None) -> int:
    """The one way an error leaves the command line: one line on stderr (the message has its line
    breaks and control characters escaped by AdvvizError itself), and its exit code."""
    print(f"advviz: error: {e}", file=sys.stderr)
    return e.exit_code if code is None else code


if __name__ == "__main__":
    sys.exit(main())
