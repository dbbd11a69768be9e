"""``advviz augment``: text-form adversarial examples of a data set as a TSV file, for ``advviz
train --augment FILE`` (label-free adversaries issue)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm.auto import tqdm

from ..analysis.augment import TEXT_FORMS, augment_rows, write_tsv
from ..api import load
from ..config import default_attack
from ..data import subset_indices
from ..errors import AdvvizError
from ..limits import check_positive, check_seed
from ..methods import attacks
from ..storage.outputs import Outputs
from . import flags


def add_parsers(sub, eval_parser, argv: list[str]) -> None:
    p = sub.add_parser("augment", help="write text-form adversarial examples (TSV) to retrain on with --augment",
                       epilog=flags.method_defaults_table(), formatter_class=_raw())
    p.add_argument("checkpoint")
    p.add_argument("--dataset", default=None, help="default: the data set it was trained on")
    p.add_argument("--split", default="train", help="(default: train)")
    p.add_argument("--attack", default=default_attack("augment"),
                   help=f"any attack: spgd, iadvt, pgd, uae, vat, ... (default {default_attack('augment')})")
    p.add_argument("--text-form", default="moved_to", choices=list(TEXT_FORMS),
                   help="each perturbed token replaced by its moved_to word, or the RAR head's reconstruction "
                        "(a rar / carl+rar checkpoint) (default: moved_to)")
    p.add_argument("--out", required=True, help="the TSV file: text, label, source_index, attack, changed_tokens")
    flags.add_overwrite_flag(p)
    p.add_argument("--max-examples", type=int, default=None, help="a seeded subset of N examples")
    p.add_argument("--token-share", type=float, default=1.0,
                   help="moved_to: replace only this share of each text's perturbed tokens, those with the largest "
                        "‖δ‖ (dense attacks move every token; default: 1, all of them)")
    p.add_argument("--keep-unchanged", action="store_true", help="also write rows whose text did not change")
    p.add_argument("--batch-size", type=int, default=32, help="(default: 32)")
    p.add_argument("--seed", type=int, default=0, help="attack and subset seed (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--data-dir", default=None)
    flags.add_preset_flag(p)
    flags.add_method_flags(p, flags.named_methods(argv, "augment"))
    p.set_defaults(func=cmd_augment)


def _raw():
    return argparse.RawDescriptionHelpFormatter


def cmd_augment(args) -> int:
    check_seed(args.seed)
    check_positive(args.batch_size, "--batch-size")
    check_positive(args.max_examples, "--max-examples")
    if args.attack not in attacks():
        raise AdvvizError(f"--attack {args.attack!r} is not an attack; attacks: {', '.join(attacks())}")
    if Path(args.out).suffix.lower() != ".tsv":
        raise AdvvizError(f"--out {args.out}: give a .tsv file (the format `advviz train --augment` reads)")
    guard = Outputs(args.overwrite, checkpoints=[args.checkpoint], data=[(args.dataset, args.data_dir)])
    guard.file(args.out, "--out")
    if not 0 < args.token_share <= 1:
        raise AdvvizError(f"--token-share must be in (0, 1], got {args.token_share}")
    model = load(args.checkpoint)
    if args.text_form == "reconstructed" and model.rar_head is None:
        raise AdvvizError(f"{args.checkpoint} has no RAR head: --text-form reconstructed needs a checkpoint trained "
                          f"with --method rar or carl+rar")
    name = args.dataset or model.config["data"]["name"]
    guard.inputs(data=[(name, args.data_dir)])
    ds = model.examples(name, args.split, args.data_dir)
    keep = subset_indices(len(ds), args.max_examples, args.seed)
    texts, labels = [ds.texts[i] for i in keep], [ds.labels[i] for i in keep]
    if not texts:
        raise AdvvizError(f"{name}/{args.split} has no examples to attack")
    values = flags.paper_or_family(args, args.attack, flags.method_values(args, [args.attack]))
    bar = tqdm(total=len(texts), desc=f"augment {args.attack}", disable=args.quiet)
    try:
        rows, s = augment_rows(model, texts, labels, args.attack, values, args.text_form, keep, args.batch_size,
                               args.seed, args.keep_unchanged, args.token_share, progress=bar.update)
    finally:
        bar.close()
    write_tsv(args.out, rows, args.overwrite)
    print(f"{name}/{args.split}: {s['n']} examples attacked with {args.attack} ({args.text_form}); wrote {s['written']} "
          f"rows to {args.out} (mean {s['mean_changed_tokens']:.2f} changed tokens"
          + (f"; {s['unchanged_skipped']} unchanged texts left out" if s["unchanged_skipped"] else "") + ")",
          file=sys.stdout)
    return 0
