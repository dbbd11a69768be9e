"""``advviz words``: the word atlas of an attack over a data set split, for one checkpoint or a
comparison of two (library: :mod:`advviz.analysis.words`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm.auto import tqdm

from ..analysis.words import SORT_KEYS, compare_atlases, word_atlas, write_atlas
from ..api import load
from ..errors import AdvvizError
from ..limits import check_max_examples, check_positive, check_seed
from ..methods import METHODS, attacks
from ..storage.jsonio import dumps
from ..storage.outputs import Outputs
from . import flags

TOP_DEFAULT = 20  # rows printed as text


def add_parsers(sub, eval_parser, argv: list[str]) -> None:
    p = sub.add_parser("words", help="word atlas: which words an attack moves over a data set, toward which words "
                                     "(two checkpoints: the per-word differences)",
                       epilog=flags.method_defaults_table(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", metavar="DIR", help="a checkpoint, or two (DIR_A DIR_B) to compare")
    p.add_argument("--attack", required=True, help="advt | fgsm | iadvt | spgd | pgd | freelb")
    p.add_argument("--dataset", default=None, help="default: the (first) checkpoint's training data set")
    p.add_argument("--split", default="dev")
    p.add_argument("--max-examples", type=int, default=None, help="a seeded subset of N examples (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subset and of the attack")
    p.add_argument("--min-count", type=int, default=1, help="only words seen at least C times (default 1)")
    p.add_argument("--sort", default="score", choices=list(SORT_KEYS),
                   help="order of the words: score = mean_norm × count (default), a column, or (two checkpoints) "
                        "delta_mean_norm / delta_top_share; descending unless --ascending")
    p.add_argument("--ascending", action="store_true", help="sort ascending (e.g. the most protected words first "
                                                             "with --sort delta_mean_norm)")
    p.add_argument("--top", type=int, default=None, help=f"only the first N words (text output: {TOP_DEFAULT})")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON object")
    out.add_argument("--out", default=None, metavar="FILE.csv", help="write the table (.csv, or .json for the JSON)")
    flags.add_overwrite_flag(p)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the atlas cache")
    p.add_argument("--quiet", action="store_true", help="no progress bar (also implied by --json)")
    p.add_argument("--data-dir", default=None)
    flags.add_preset_flag(p)
    flags.add_method_flags(p, flags.named_methods(argv, "words"))
    p.set_defaults(func=cmd_words)


def _check_args(args):
    """Every flag checked before a model is loaded or an example attacked; returns the guard of
    ``--out`` (:class:`advviz.storage.outputs.Outputs`), to which the data set is added once known."""
    if len(args.checkpoints) > 2:
        raise AdvvizError(f"give one checkpoint, or two to compare (DIR_A DIR_B); got {len(args.checkpoints)}")
    if args.sort.startswith("delta_") and len(args.checkpoints) != 2:
        raise AdvvizError(f"--sort {args.sort} compares two checkpoints: give DIR_A DIR_B")
    known = attacks()
    if args.attack not in known:
        what = "a training method, not an attack" if args.attack in METHODS else "not an attack"
        raise AdvvizError(f"--attack {args.attack!r} is {what}; attacks: {', '.join(known)}")
    if args.min_count < 1:
        raise AdvvizError(f"--min-count must be at least 1, got {args.min_count}")
    check_max_examples(args.max_examples)
    check_positive(args.top, "--top")
    check_positive(args.batch_size, "--batch-size")
    check_seed(args.seed)
    if args.out and Path(args.out).suffix.lower() not in (".csv", ".json"):
        raise AdvvizError(f"{args.out}: --out must end in .csv (or .json)")
    guard = Outputs(args.overwrite, checkpoints=args.checkpoints, data=[(args.dataset, args.data_dir)])
    guard.file(args.out, "--out")
    return guard


def _examples(args, model, name: str):
    ds = model.examples(name, args.split, args.data_dir)
    if len(ds) == 0:
        raise AdvvizError(f"{name}/{args.split} has no examples")
    if args.max_examples is not None and args.max_examples > len(ds):
        print(f"advviz: note: asked for {args.max_examples} examples but {name}/{args.split} has {len(ds)}; "
              f"using all {len(ds)}", file=sys.stderr)
    return ds.subset(args.max_examples, args.seed)


def _atlas(args, path: str, model, dataset: str, values: dict, show: bool) -> dict:
    ds = _examples(args, model, dataset)
    bars = []  # opened at the first report, so nothing is drawn before an error line

    def progress(frac: float, msg: str) -> None:
        if not bars:
            bars.append(tqdm(total=len(ds), desc=f"words {Path(path).name}", unit="sent", leave=False,
                             disable=not show))
        bar = bars[0]
        bar.n = min(len(ds), int(round(frac * len(ds))))
        bar.set_postfix_str(msg if "sentences" not in msg else "", refresh=False)
        bar.refresh()

    try:
        atlas = word_atlas(model, ds.texts, ds.labels, args.attack, values, dataset=dataset, split=args.split,
                           seed=args.seed, min_count=args.min_count,
                           sort="score" if args.sort.startswith("delta_") else args.sort, ascending=args.ascending,
                           batch_size=args.batch_size, cache_dir=None if args.no_cache else "auto",
                           data_dir=args.data_dir, progress=progress)
    finally:
        for bar in bars:
            bar.close()
    return {**atlas, "model": str(path)}


def cmd_words(args) -> int:
    from ..analysis.attacks import check_attack  # deferred: `advviz --help` must not load it

    guard = _check_args(args)
    models = [load(p) for p in args.checkpoints]  # every checkpoint checked before any work
    dataset = args.dataset or models[0].config["data"]["name"]
    guard.inputs(data=[(dataset, args.data_dir)])
    show = not (args.json or args.quiet)
    values = flags.paper_or_family(args, args.attack, flags.method_values(args, [args.attack]))
    for model in models:  # every model can take these attack settings, before any work
        check_attack(model, args.attack, values)
    atlases = [_atlas(args, path, model, dataset, values, show) for path, model in zip(args.checkpoints, models)]
    atlas = atlases[0] if len(atlases) == 1 else compare_atlases(atlases[0], atlases[1], args.sort, args.ascending)
    if args.top is not None:
        atlas = {**atlas, "words": atlas["words"][: args.top]}
    if args.out:
        write_atlas(atlas, args.out, args.overwrite)
    if args.json:
        print(dumps(atlas))
        return 0
    if args.out:
        print(f"{len(atlas['words'])} words (min count {args.min_count}) -> {args.out}; {_corr_line(atlas)}")
        return 0
    print(format_atlas(atlas, args.top or TOP_DEFAULT))
    return 0


def _rho(v) -> str:
    return "n/a" if v is None else f"{v:+.3f}"


def _corr_line(atlas: dict) -> str:
    c = atlas["correlations"]
    return (f"Spearman over {c['n_words']} words: mean_norm~saliency {_rho(c['mean_norm_saliency'])}, "
            f"mean_norm~frequency {_rho(c['mean_norm_frequency'])}")


def format_atlas(atlas: dict, top: int) -> str:
    a = atlas["attack"]
    hp = ", ".join(f"{k} {v}" for k, v in a.items() if k != "name")
    cmp_ = atlas.get("compare")
    lines = [f"{atlas['model']}  {atlas['dataset']}/{atlas['split']}  {atlas['n_examples']} sentences  "
             f"attack {a['name']} ({hp})  flip rate {atlas['flip_rate']:.3f}"
             + ("  [cached]" if atlas.get("cached") else "")]
    if cmp_:
        lines.append(f"compared with {cmp_['model']}  flip rate {cmp_['flip_rate']:.3f}  (Δ = B − A)")
    head = f"{'word':<16} {'count':>6} {'mean_norm':>9} {'top_share':>9} {'saliency':>8} {'freq':>6} {'flip':>5}"
    head += f" {'Δmean_norm':>10} {'Δtop_share':>10}" if cmp_ else ""
    lines.append(head + "  moved_to")
    for r in atlas["words"][:top]:
        freq = "-" if r["frequency"] is None else str(r["frequency"])
        line = (f"{r['word'][:16]:<16} {r['count']:>6} {r['mean_norm']:>9.4f} {r['top_share']:>9.3f} "
                f"{r['saliency']:>8.4f} {freq:>6} {r['flip_share']:>5.2f}")
        if cmp_:
            d1, d2 = r.get("delta_mean_norm"), r.get("delta_top_share")
            line += f" {'-' if d1 is None else f'{d1:+.4f}':>10} {'-' if d2 is None else f'{d2:+.3f}':>10}"
        lines.append(line + "  " + ", ".join(f"{w} {c}" for w, c in r["moved_to"][:3]))
    shown = min(top, len(atlas["words"]))
    lines.append(f"({shown} of {atlas['n_words']} words with count >= {atlas['min_count']}; sorted by "
                 f"{'mean_norm × count' if atlas['sort'] == 'score' else atlas['sort']}"
                 f"{', ascending' if atlas.get('ascending') else ''})")
    lines.append(_corr_line(atlas) + (f"; B: mean_norm~saliency {_rho(cmp_['correlations']['mean_norm_saliency'])}, "
                                      f"mean_norm~frequency {_rho(cmp_['correlations']['mean_norm_frequency'])}"
                                      if cmp_ else ""))
    if atlas.get("frequency_source") and atlas["words"] and atlas["words"][0]["frequency"] is None:
        lines.append(f"note: {atlas['frequency_source']}")
    return "\n".join(lines)
