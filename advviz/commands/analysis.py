"""``advviz lm train``, ``perplexity``, ``compare``, ``project`` and ``report`` (analysis issue)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm.auto import tqdm

from ..analysis.lm import LMConfig, LMTrainConfig, adversarial_perplexity, load_lm, train_lm
from ..api import load
from ..config import COMMAND_DEFAULTS, add_flags, default_attack, given
from ..errors import AdvvizError
from ..limits import check_count, check_seed, maximum
from ..methods import attacks
from ..storage import outdir
from ..storage.jsonio import dumps
from ..storage.outputs import Outputs, write_output
from . import flags


def add_parsers(sub, eval_parser, argv: list[str]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    method_defaults_table = flags.method_defaults_table
    p = sub.add_parser("lm", help="word-level LSTM language model (perplexity of adversarial text)")
    lsub = p.add_subparsers(dest="lm_command", required=True)
    t = lsub.add_parser("train", help="train an LSTM LM on a data set's text; held-out perplexity in metrics.json")
    t.add_argument("--dataset", default="sst2-sent")
    t.add_argument("--split", default="train")
    t.add_argument("--out", default=None, help="LM directory (default models/lm-DATASET)")
    add_flags(t, LMTrainConfig)
    add_flags(t.add_argument_group("language model"), LMConfig)
    t.add_argument("--data-dir", default=None)
    t.add_argument("--overwrite", action="store_true", help="replace the language model already in --out")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_lm_train)

    p = sub.add_parser("perplexity", help="LM perplexity of original vs discretized adversarial text (SPGD Table 1)",
                       epilog=method_defaults_table(), formatter_class=raw)
    p.add_argument("checkpoint")
    p.add_argument("--lm", required=True, help="an LM directory from `advviz lm train`")
    p.add_argument("--attack", action="append", required=True,
                   help="attack name(s): repeat or comma-separate, e.g. advt,iadvt,spgd")
    _split_flags(p)
    flags.add_preset_flag(p)
    flags.add_method_flags(p, flags.named_methods(argv, "perplexity"))
    p.set_defaults(func=cmd_perplexity, method_names=flags.named_methods(argv, "perplexity"))

    p = sub.add_parser("compare", help="significance of the difference between two checkpoints")
    p.add_argument("checkpoint_a")
    p.add_argument("checkpoint_b")
    _split_flags(p)
    p.add_argument("--n-boot", type=int, default=1000, help=f"bootstrap resamples for the 95%% CI (default 1000, at most {maximum('n_boot'):,})")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("project", help="2-D map of original (and adversarial) representations",
                       epilog=method_defaults_table(), formatter_class=raw)
    p.add_argument("checkpoint")
    _split_flags(p, n_flag="--n")
    p.add_argument("--attack", default=None, help="also project adversarial points (e.g. pgd, freelb)")
    p.add_argument("--reducer", default="umap", choices=["umap", "pca", "tsne"])
    p.add_argument("--out", required=True, help="table: .parquet or .csv (metrics go to OUT.metrics.json)")
    p.add_argument("--cache-dir", default=None, help="default $ADVVIZ_CACHE_DIR/projections or ~/.cache/advviz")
    p.add_argument("--no-cache", action="store_true")
    flags.add_overwrite_flag(p)
    flags.add_preset_flag(p)
    flags.add_method_flags(p, flags.named_methods(argv, "project"))
    p.set_defaults(func=cmd_project)

    p = sub.add_parser("report", help="markdown + JSON tables over several checkpoints (papers' table shapes)",
                       epilog=method_defaults_table(), formatter_class=raw)
    p.add_argument("checkpoints", nargs="+")
    _split_flags(p)
    p.add_argument("--attack", default=default_attack("report"),
                   help=f"robustness attack (default {default_attack('report')}: k-PGD as in CARL)")
    p.add_argument("--eps", default=",".join(f"{e:g}" for e in COMMAND_DEFAULTS["report_eps"]),
                   help=f"comma-separated ε values (default %(default)s; at most {maximum('list_values')})")
    p.add_argument("--lm", default=None, help="LM directory: adds the perplexity-gap table")
    p.add_argument("--ppl-attacks", default=",".join(COMMAND_DEFAULTS["ppl_attacks"]),
                   help="attacks for the perplexity table; NAME@EPS sets that attack's ε")
    p.add_argument("--textattack", action="append", default=[], metavar="RECIPE",
                   help="add a discrete-attack table run by TextAttack (repeatable; deepwordbug, textfooler-glove, "
                        "textfooler-cf, pwws, textfooler; needs the extra: pip install -e '.[textattack]')")
    p.add_argument("--textattack-examples", type=int, default=None, metavar="N",
                   help="attack only the first N of the report's examples with TextAttack (default: all of them)")
    flags.add_neighbors_flag(p, "--textattack textfooler-cf")
    p.add_argument("--title", default=None)
    p.add_argument("--out", required=True, help="report.md (report.json is written beside it)")
    flags.add_overwrite_flag(p)
    flags.add_preset_flag(p)
    flags.add_method_flags(p, flags.named_methods(argv, "report"))
    p.set_defaults(func=cmd_report, method_names=flags.named_methods(argv, "report"))


def _split_flags(p, n_flag: str = "--max-examples") -> None:
    p.add_argument("--dataset", default=None, help="default: the (first) checkpoint's training data set")
    p.add_argument("--split", default="dev")
    p.add_argument(n_flag, dest="max_examples", type=int, default=None,
                   help="a seeded subset of N examples (all when N >= the split)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bars (also implied by --json)")


def _examples(args, model):
    """The (sub)set of the split, saying so when --n/--max-examples exceeds it."""
    if args.max_examples is not None and args.max_examples <= 0:
        raise AdvvizError("--n / --max-examples must be positive")
    name = args.dataset or model.config["data"]["name"]
    ds = model.examples(name, args.split, args.data_dir)
    if args.max_examples is not None and args.max_examples > len(ds):
        print(f"advviz: note: asked for {args.max_examples} examples but {name}/{args.split} has {len(ds)}; "
              f"using all {len(ds)}", file=sys.stderr)
    return name, ds.subset(args.max_examples, args.seed)


def _check_common(args) -> None:
    """--seed and --n / --max-examples of the analysis commands, before anything is loaded."""
    check_seed(args.seed)
    if args.max_examples is not None and args.max_examples <= 0:
        raise AdvvizError(f"--n / --max-examples must be positive, got {args.max_examples}")


def _attack_list(values) -> list[str]:
    names = [a.strip() for v in values for a in v.split(",") if a.strip()]
    known = attacks()
    for a in names:
        if a.partition("@")[0] not in known:
            raise AdvvizError(f"unknown attack '{a}'; attacks: {', '.join(known)}")
    if not names:
        raise AdvvizError("give at least one attack")
    check_count("list_values", len(names), "the list of attacks (number of names)")
    return names


def cmd_lm_train(args) -> int:
    try:
        cfg = LMTrainConfig(**given(args, LMTrainConfig))
        mcfg = LMConfig(**given(args, LMConfig))
    except ValueError as e:
        raise AdvvizError(str(e)) from None

    out = Path(args.out or Path("models") / f"lm-{Path(args.dataset).stem}")
    outdir.check_replaceable(out, outdir.LM)  # refuse a foreign --out before leaving a lock file beside it
    with outdir.OutputLock(out, "language-model training"):
        if outdir.check_replaceable(out, outdir.LM) == outdir.LM and not args.overwrite:
            raise AdvvizError(f"{out} already holds a language model; pass --overwrite to replace it "
                              f"or choose a new --out")
        _, m = train_lm(args.dataset, out, cfg, mcfg, args.split, args.data_dir, progress=not args.quiet)
    print(f"held-out perplexity {m['held_out_perplexity']:.2f} ({m['held_out_texts']} texts, vocab "
          f"{m['vocab_size']:,}); language model: {out}")
    return 0


def cmd_perplexity(args) -> int:
    from ..analysis.report import parse_attack_spec  # deferred: `advviz --help` must not load it

    _check_common(args)
    names = _attack_list(args.attack)
    lm = load_lm(args.lm)
    model = load(args.checkpoint)
    dataset, ds = _examples(args, model)
    out = {"model": str(args.checkpoint), "lm": str(args.lm), "dataset": dataset, "split": args.split, "n": len(ds),
           "lm_held_out_perplexity": lm.metrics.get("held_out_perplexity"), "attacks": []}
    for spec in names:
        name, ov = parse_attack_spec(spec)
        values = flags.paper_or_family(args, name, {**flags.for_method(name, flags.method_values(
            args, args.method_names)), **ov})
        r = adversarial_perplexity(model, lm, ds.texts, ds.labels, name, values,
                                   args.seed, progress=not (args.json or args.quiet))
        out["attacks"].append({**r, "attack": spec})
    if args.json:
        print(dumps(out))
        return 0
    print(f"{dataset}/{args.split}, {len(ds)} texts; LM {args.lm}")
    print(f"{'attack':10s} {'original':>10s} {'adversarial':>12s} {'gap':>8s} {'changed/text':>13s}")
    for r in out["attacks"]:
        print(f"{r['attack']:10s} {r['original_perplexity']:10.2f} {r['adversarial_perplexity']:12.2f} "
              f"{r['gap']:8.2f} {r['changed_tokens_per_text']:13.2f}")
    return 0


def cmd_compare(args) -> int:
    # deferred: `advviz --help` must not load the analyses (scipy)
    from ..analysis.stats import check_n_boot, check_same_labels, compare_models

    _check_common(args)
    check_n_boot(args.n_boot)  # before any model runs
    a, b = load(args.checkpoint_a), load(args.checkpoint_b)
    check_same_labels(a, b)
    dataset, ds = _examples(args, a)
    r = compare_models(a, b, ds.texts, ds.labels, args.n_boot, args.seed, progress=not (args.json or args.quiet))
    r = {"dataset": dataset, "split": args.split, **r}
    if args.json:
        print(dumps(r))
        return 0
    mc = r["mcnemar"]
    print(f"{dataset}/{args.split}, n {r['n']}")
    print(f"  A {a.name}: accuracy {r['accuracy_a']:.4f}  loss {r['loss_a']:.4f}")
    print(f"  B {b.name}: accuracy {r['accuracy_b']:.4f}  loss {r['loss_b']:.4f}")
    print(f"  difference A−B {r['accuracy_diff']:+.4f}, 95% bootstrap CI [{r['ci95'][0]:+.4f}, {r['ci95'][1]:+.4f}]")
    if r["t"] is None:
        print(f"  paired t-test on losses: {r['t_test']}")
    else:
        print(f"  paired t-test on losses: t {r['t']:.3f}, p {r['p']:.4g}")
    print(f"  McNemar ({mc['method']}, b={mc['b']}, c={mc['c']}): statistic {mc['statistic']:.3f}, p {mc['p']:.4g}")
    return 0


def cmd_project(args) -> int:
    _check_common(args)
    # deferred: `advviz --help` must not load the analyses (pandas)
    from ..analysis.projection import default_cache_dir, project_representations, write_table

    if Path(args.out).suffix.lower() not in (".parquet", ".csv"):
        raise AdvvizError(f"{args.out}: --out must end in .parquet or .csv")
    cache = None if args.no_cache else Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    guard = Outputs(args.overwrite, checkpoints=[args.checkpoint], data=[(args.dataset, args.data_dir)],
                    other=[(cache, "the projection cache")])
    guard.file(args.out, "--out")
    guard.file(Path(args.out).with_suffix(".metrics.json"), "--out (metrics)", beside=args.out)
    model = load(args.checkpoint)
    guard.inputs(data=[(args.dataset or model.config["data"]["name"], args.data_dir)])
    _, ds = _examples(args, model)
    bar = tqdm(total=100, desc="project", disable=args.json or args.quiet, bar_format="{l_bar}{bar}| {postfix}")

    def progress(frac: float, msg: str) -> None:
        bar.n = int(100 * frac)
        bar.set_postfix_str(msg)
        bar.refresh()

    df, m = project_representations(model, ds.texts, ds.labels, args.attack,
                                    flags.paper_or_family(args, args.attack, flags.method_values(args, [args.attack]))
                                    if args.attack else None, args.reducer, args.seed,
                                    cache, progress)
    bar.close()
    out = write_table(df, args.out, args.overwrite)
    side = out.with_suffix(".metrics.json")
    write_output(side, lambda tmp: tmp.write_text(dumps(m, indent=2) + "\n", encoding="utf-8"), "--out (metrics)",
                 beside=out)
    if m.get("fallback"):
        print(f"advviz: note: {m['fallback']}", file=sys.stderr)
    if args.json:
        print(dumps({"table": str(out), "metrics_file": str(side), **m}))
        return 0
    sil = m["silhouette_2d"]
    line = f"{len(df)} points ({m['reducer']}) -> {out}; silhouette by label {sil:.3f}" if sil is not None \
        else f"{len(df)} points ({m['reducer']}) -> {out}"
    if "mean_distance_2d" in m:
        line += (f"; mean orig–adv distance 2-D {m['mean_distance_2d']:.3f}, full {m['mean_euclidean_full']:.3f} "
                 f"(cosine {m['mean_cosine_full']:.3f})")
    print(line + f"; metrics: {side}")
    return 0


def cmd_report(args) -> int:
    # deferred: `advviz --help` must not load it
    from ..analysis.report import build_report
    from ..analysis.robustness import parse_epsilons

    _check_common(args)
    from ..analysis.report import check_outputs  # deferred: `advviz --help` must not load it

    if Path(args.out).suffix.lower() == ".json":
        raise AdvvizError(f"{args.out}: --out names the markdown report (report.md); its JSON is written beside it")
    check_outputs(args.out, args.checkpoints, args.dataset, args.data_dir, args.lm, args.overwrite)
    eps = parse_epsilons(args.eps)
    ppl = _attack_list([args.ppl_attacks]) if args.lm else []
    dataset = args.dataset or load(args.checkpoints[0]).config["data"]["name"]
    values = flags.for_method(args.attack, flags.method_values(args, args.method_names))
    rep = build_report(args.checkpoints, dataset, args.split, args.attack, eps, values, args.lm,
                       ppl, args.max_examples, args.seed, data_dir=args.data_dir, out_md=args.out,
                       title=args.title, progress=not (args.json or args.quiet),
                       textattack=[r.strip() for spec in args.textattack for r in spec.split(",") if r.strip()],
                       textattack_examples=args.textattack_examples, overwrite=args.overwrite,
                       preset=args.preset or "family", neighbors=args.neighbors)
    if args.json:
        print(dumps(rep))
    else:
        print(f"report over {len(rep['rows'])} checkpoints -> {args.out} (and {Path(args.out).with_suffix('.json')})")
    return 0
