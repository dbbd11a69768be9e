"""``advviz reconstruct``: RAR's text-form adversarial examples over a data set (CARL/RAR paper
§4.5, Table 6)."""

from __future__ import annotations

from ..api import load
from ..config import default_attack
from ..errors import AdvvizError
from ..limits import check_positive, check_seed
from ..methods import METHODS
from ..storage.outputs import Outputs, write_output
from . import flags


def cmd_reconstruct(args) -> int:
    # deferred: `advviz --help` must not load it
    from ..analysis.stats import check_same_labels
    from ..analysis.reconstruct import reconstruct_dataset, summarize

    check_seed(args.seed)
    check_positive(args.batch_size, "--batch-size")
    check_positive(args.max_examples, "--max-examples")
    if args.show < 0:
        raise AdvvizError(f"--show must be >= 0, got {args.show}")
    guard = Outputs(args.overwrite, checkpoints=[args.checkpoint, args.judge], data=[(args.dataset, args.data_dir)])
    guard.file(args.out, "--out")
    if args.attack not in METHODS or not METHODS[args.attack].is_attack:
        known = ", ".join(n for n, c in METHODS.items() if c.is_attack)
        raise AdvvizError(f"--attack {args.attack!r} is not an attack; known: {known}")
    model = load(args.checkpoint)
    if model.rar_head is None:
        raise AdvvizError(f"{args.checkpoint} has no RAR head: train it with --method rar or carl+rar")
    judge = load(args.judge) if args.judge else None
    if judge is not None:
        check_same_labels(model, judge)
    name = args.dataset or model.config["data"]["name"]
    guard.inputs(data=[(name, args.data_dir)])
    ds = model.examples(name, args.split, args.data_dir).subset(args.max_examples, args.seed)
    values = flags.paper_or_family(args, args.attack, flags.method_values(args, [args.attack]))
    df = reconstruct_dataset(model, ds.texts, ds.labels, args.attack, values, judge,
                             args.batch_size, args.seed, progress=not args.quiet)
    s = summarize(df)
    if args.out:
        write_output(args.out, lambda tmp: df.to_csv(tmp, index=False), "--out", overwrite=args.overwrite)
    print(f"{name}/{args.split}: {s['n']} sentences attacked with {args.attack}; "
          f"{s['changed']} reconstructions differ from the original; "
          f"{s['flips_self']} flip this model's prediction (adversarial embeddings flip {s['adv_flips_self']})")
    if judge is not None:
        print(f"judge {judge.name}: {s['flips_judge']} changed reconstructions flip its prediction "
              f"({s['flips_judge_from_correct']} from correct to wrong)")
    names = model.label_names
    shown = df[df["changed"]].head(args.show)
    for _, r in shown.iterrows():
        tail = (f"  judge {names[r['judge_pred']]} -> {names[r['judge_pred_on_reconstructed']]}"
                if judge is not None else "")
        print(f"\n  {r['text']}\n  {r['reconstructed_text']}\n  this model {names[r['pred']]} -> "
              f"{names[r['pred_on_reconstructed']]}{tail}")
    if args.out:
        print(f"\nwrote {len(df)} rows to {args.out}")
    return 0


def add_parsers(sub, eval_parser, argv: list[str]) -> None:
    p = sub.add_parser("reconstruct", help="RAR: text-form adversarial examples (paper Table 6)")
    p.add_argument("checkpoint", help="a checkpoint trained with --method rar or carl+rar")
    p.add_argument("--dataset", default=None, help="default: the data set it was trained on")
    p.add_argument("--split", default="dev", help="(default: dev)")
    p.add_argument("--max-examples", type=int, default=None, help="a seeded subset of N examples")
    p.add_argument("--attack", default=default_attack("reconstruct"),
                   help=f"an embedding-space attack (default: {default_attack('reconstruct')}, k-PGD as in the paper)")
    p.add_argument("--judge", default=None, help="another checkpoint (e.g. the baseline) that judges the texts")
    p.add_argument("--out", default=None, help="write every row to this CSV file")
    flags.add_overwrite_flag(p)
    p.add_argument("--batch-size", type=int, default=32, help="(default: 32)")
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument("--show", type=int, default=5, help="print this many changed examples (default: 5)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--data-dir", default=None)
    flags.add_preset_flag(p)
    flags.add_method_flags(p, flags.named_methods(argv, "reconstruct"))
    p.set_defaults(func=cmd_reconstruct)
