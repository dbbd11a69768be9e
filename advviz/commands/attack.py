"""``advviz inspect`` (what the adversary does to a text) and ``advviz eval --attack``
(accuracy and representation drift under attack, CARL paper Tables 4–5)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm.auto import tqdm

from ..api import load
from ..config import COMMAND_DEFAULTS, default_attack, flag_fields
from ..data import read_lines, subset_indices
from ..errors import AdvvizError
from ..evaluate import evaluate
from ..limits import MAX_TEXT_CHARS, check_max_examples, check_positive, check_seed, maximum
from ..methods import attacks, get_method
from ..registry import describe
from ..storage.jsonio import dumps
from ..storage.outputs import Outputs, write_output
from ..substitutions import neighbors_path
from . import flags


def add_parsers(sub, eval_parser, argv: list[str]) -> None:
    p = sub.add_parser("inspect", help="show the adversary's per-token perturbation of a text",
                       epilog=flags.method_defaults_table(), formatter_class=_raw())
    p.add_argument("checkpoint")
    p.add_argument("--text", action="append", default=[], help="a text to attack (repeatable)")
    p.add_argument("--input", default=None, metavar="FILE",
                   help="a file with one text per line (- reads standard input); at most --max-data-mb")
    p.add_argument("--attack", default=default_attack("inspect"),
                   help=f"advt | fgsm | iadvt | spgd | pgd | freelb | vat | uae | ascc (default {default_attack('inspect')})")
    p.add_argument("--label", type=int, default=None, help="label to attack (default: the model's prediction)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="one JSON object per text (a list when several)")
    flags.add_preset_flag(p)
    flags.add_method_flags(p, flags.named_methods(argv, "inspect"))
    p.set_defaults(func=cmd_inspect)

    g = eval_parser.add_argument_group("attack (advviz eval --attack NAME)")
    g.add_argument("--attack", default=None,
                   help="also evaluate under this attack: an embedding-space attack (e.g. pgd) or a discrete one run "
                        "by TextAttack, textattack:RECIPE (deepwordbug, textfooler-glove, textfooler-cf, pwws, "
                        "textfooler; needs the extra: pip install -e '.[textattack]')")
    g.add_argument("--eps", default=None,
                   help="comma-separated ε values, e.g. 0.02,0.075,0.1 (default, as on the app's Robustness page: "
                        "half, once and twice --epsilon, else the ε the model was trained with under this attack, "
                        f"else the attack's for the model's family; at most {maximum('list_values')} values)")
    g.add_argument("--per-example", default=None, metavar="FILE", help="write per-example rows (JSON lines)")
    g.add_argument("--attack-seed", type=int, default=0)
    g.add_argument("--adversarial-csv", default=None, metavar="FILE",
                   help="textattack:RECIPE only: write the successful adversarial examples as a CSV that "
                        "`advviz train --augment FILE` reads")
    g.add_argument("--overlap", default=None, metavar="ATTACK",
                   help="textattack:RECIPE only: also run this embedding-space attack (e.g. spgd) on the successful "
                        "examples and report the share of changed words among each sentence's top-3 ‖δᵢ‖ tokens")
    g.add_argument("--attack-batch-size", type=int, default=COMMAND_DEFAULTS["textattack_batch_size"], metavar="N",
                   help="textattack:RECIPE only: texts per batched model query (default %(default)s)")
    flags.add_neighbors_flag(g, "textattack:textfooler-cf only")
    flags.add_overwrite_flag(g)
    flags.add_preset_flag(g)
    flags.add_method_flags(eval_parser, flags.named_methods(argv, "eval"))
    previous = eval_parser.get_default("func")
    eval_parser.set_defaults(func=lambda args: cmd_eval_attack(args, previous))


def _raw():
    return argparse.RawDescriptionHelpFormatter


def read_texts(args) -> list[str]:
    texts = list(args.text or [])
    if args.input:
        texts += [ln for ln in read_lines(args.input, allow_stdin=True) if ln.strip()]
    if not texts:
        raise AdvvizError("give at least one --text or an --input file")
    return texts


def cmd_inspect(args) -> int:
    from ..analysis.inspection import inspect  # deferred: `advviz --help` must not load it

    check_seed(args.seed)
    texts = read_texts(args)
    model = load(args.checkpoint)
    values = flags.paper_or_family(args, args.attack, flags.method_values(args, [args.attack]))
    results = inspect(model, texts, args.attack, values, args.label, args.seed)
    for r in results:
        if r["n_chars"] > MAX_TEXT_CHARS:
            print(f"advviz: note: text of {r['n_chars']:,} characters: its first {MAX_TEXT_CHARS:,} characters were "
                  f"read ({r['n_tokens']:,} tokens), truncated to {model.classifier.tokenizer.max_length}",
                  file=sys.stderr)
        elif r["truncated"]:
            print(f"advviz: note: text of {r['n_tokens']} tokens truncated to {model.classifier.tokenizer.max_length}",
                  file=sys.stderr)
    if args.json:
        print(dumps(results[0] if len(results) == 1 else results))
    else:
        for r in results:
            print(format_result(r))
    return 0


def _label(r, i) -> str:
    names = r.get("label_names") or []
    return f"{i} ({names[i]})" if i < len(names) else str(i)


def format_result(r: dict) -> str:
    hp = ", ".join(f"{k} {v}" for k, v in r["attack"].items() if k != "name")
    lines = [f"{r['model']}  attack {r['attack']['name']} ({hp})",
             f"text:        {r['text']}",
             f"prediction:  {_label(r, r['pred'])} p={max(r['probs']):.3f}  ->  adversarial {_label(r, r['adv_pred'])} "
             f"p={max(r['adv_probs']):.3f}",
             f"{'idx':>4}  {'token':<16} {'norm':>8}  {'moved_to':<16} {'nearest':<16} {'cos':>6}"]
    for t in r["tokens"]:
        cos = f"{t['cosine']:.3f}" if t["cosine"] is not None else ""
        lines.append(f"{t['index']:>4}  {t['token'][:16]:<16} {t['norm']:>8.4f}  {(t['moved_to'] or '-')[:16]:<16} "
                     f"{t['nearest'][:16]:<16} {cos:>6}")
    lines.append(f"discretized: {r['discretized_text']}")
    if r["reconstructed_text"] is not None:
        lines.append(f"reconstructed: {r['reconstructed_text']}")
    return "\n".join(lines) + "\n"


def cmd_eval_attack(args, previous) -> int:
    from ..analysis.discrete import is_textattack  # deferred: `advviz --help` must not load it

    attack = getattr(args, "attack", None)
    if not is_textattack(attack):
        sets_attack = attack in attacks() and "neighbors" in {f.name for f in flag_fields(get_method(attack).Config)}
        for flag, value in (("--adversarial-csv", args.adversarial_csv), ("--overlap", args.overlap),
                            ("--neighbors", None if sets_attack else args.neighbors)):
            if value:
                raise AdvvizError(f"{flag} needs --attack textattack:RECIPE"
                                  + (" (embedding-space attacks write text-form examples with `advviz augment`)"
                                     if flag == "--adversarial-csv" else ""))
    if getattr(args, "attack", None) is None:
        if args.per_example:
            raise AdvvizError("--per-example needs --attack NAME (it writes one row per attacked example)")
        return previous(args)
    if is_textattack(args.attack):
        return cmd_eval_textattack(args)
    # deferred: `advviz --help` must not load the analyses
    from ..analysis.robustness import default_epsilons, evaluate_under_attack, parse_epsilons

    check_max_examples(args.max_examples)
    check_seed(args.attack_seed, "--attack-seed")
    guard = _outputs(args)
    eps = parse_epsilons(args.eps) if args.eps is not None else None
    model = load(args.checkpoint)
    name = args.dataset or model.config["data"]["name"]
    guard.inputs(data=[(name, args.data_dir)])
    ds = model.examples(name, args.split, args.data_dir).subset(args.max_examples, 0)
    if len(ds) == 0:
        raise AdvvizError(f"{name}/{args.split} has no examples to evaluate")
    res = {"model": str(args.checkpoint), "dataset": name, "split": args.split,
           **evaluate(model.classifier, ds.texts, ds.labels)}
    values = flags.paper_or_family(args, args.attack, flags.method_values(args, [args.attack]))
    if eps is None:  # the Robustness page's grid around the ε that suits this model
        eps = default_epsilons(args.attack, values, ["model"], [_registry_row(model)])
    results = evaluate_under_attack(model, ds.texts, ds.labels, args.attack, values, eps,
                                    seed=args.attack_seed, progress=not (args.json or args.quiet))
    if args.per_example:
        _write_per_example(Path(args.per_example), results, args.overwrite)
    res["attacks"] = [{k: v for k, v in a.items() if k != "per_example"} for a in results]
    if args.json:
        print(dumps(res))
        return 0
    print(f"{name}/{args.split}: accuracy {res['accuracy']:.4f}  macro-F1 {res['macro_f1']:.4f}  "
          f"loss {res['loss']:.4f}  n {res['n']}")
    for a in res["attacks"]:
        print(f"  {a['name']} ε={a['epsilon']:g}: accuracy {a['accuracy']:.4f}  flip rate {a['flip_rate']:.4f}  "
              f"cosine {a['cosine']:.4f}  euclidean {a['euclidean']:.4f}")
    return 0


def _registry_row(model) -> dict:
    """The model's registry row (what the Robustness page reads: its arch, method and trained ε)."""
    directory = getattr(model, "directory", None)
    row = describe(Path(directory)) if directory else {}
    return {**row, "name": "model", "arch": row.get("arch") or getattr(model.classifier, "arch", None)}


def _outputs(args):
    """``--per-example`` and ``--adversarial-csv`` checked against each other and the inputs known
    before the model is loaded (the data set a checkpoint names is added once it is read)."""
    guard = Outputs(args.overwrite, checkpoints=[args.checkpoint], data=[(args.dataset, args.data_dir)])
    guard.file(args.per_example, "--per-example")
    guard.file(getattr(args, "adversarial_csv", None), "--adversarial-csv")
    return guard


def _write_per_example(path: Path, attacks: list[dict], overwrite: bool) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            for a in attacks:
                for row in a["per_example"]:
                    f.write(dumps({"attack": a["name"], "epsilon": a["epsilon"], **row}) + "\n")

    write_output(path, write, "--per-example", overwrite=overwrite)


def cmd_eval_textattack(args) -> int:
    """``advviz eval DIR --attack textattack:RECIPE``: clean accuracy and TextAttack's row."""
    # deferred: `advviz --help` must not load the analyses
    from ..analysis.discrete import (RECIPES, adversarial_rows, check_recipe, refuse_unused_neighbors,
                                     run_textattack, write_csv)

    check_max_examples(args.max_examples)
    check_seed(args.attack_seed, "--attack-seed")
    check_positive(args.attack_batch_size, "--attack-batch-size")
    if args.eps is not None:
        raise AdvvizError("--eps applies to embedding-space attacks; a TextAttack recipe has its own budget")
    guard = _outputs(args)
    if args.adversarial_csv and Path(args.adversarial_csv).suffix.lower() != ".csv":
        raise AdvvizError(f"--adversarial-csv {args.adversarial_csv}: give a .csv file")
    recipe = check_recipe(args.attack, args.neighbors, args.data_dir)
    refuse_unused_neighbors(args.neighbors, [recipe])
    if RECIPES[recipe].uses_neighbors:  # an output never replaces the substitution sets it reads
        guard.inputs(other=[(neighbors_path(args.neighbors, args.data_dir), "the substitution sets")])
    if args.overlap:
        if args.overlap not in attacks():
            raise AdvvizError(f"--overlap {args.overlap!r} is not an embedding-space attack; attacks: "
                              f"{', '.join(attacks())}")
    model = load(args.checkpoint)
    if args.overlap:  # a setting this model cannot take is one line before TextAttack runs, not after
        from ..analysis.attacks import check_attack  # deferred: `advviz --help` must not load it

        overlap_values = flags.paper_or_family(args, args.overlap, flags.method_values(args, [args.overlap]))
        check_attack(model, args.overlap, overlap_values)
    name = args.dataset or model.config["data"]["name"]
    guard.inputs(data=[(name, args.data_dir)])
    ds = model.examples(name, args.split, args.data_dir)
    keep = subset_indices(len(ds), args.max_examples, 0)
    texts, labels = [ds.texts[i] for i in keep], [ds.labels[i] for i in keep]
    if not texts:
        raise AdvvizError(f"{name}/{args.split} has no examples to evaluate")
    res = {"model": str(args.checkpoint), "dataset": name, "split": args.split, **evaluate(model.classifier, texts, labels)}
    bar = tqdm(total=len(texts), desc=f"textattack:{recipe}", disable=args.json or args.quiet)
    try:
        out = run_textattack(model, texts, labels, recipe, seed=args.attack_seed, batch_size=args.attack_batch_size,
                             progress=lambda done, total: bar.update(done - bar.n), neighbors=args.neighbors,
                             data_dir=args.data_dir)
    finally:
        bar.close()
    for r in out["per_example"]:
        r["source_index"] = keep[r["index"]]
    if args.per_example:
        _write_per_example(Path(args.per_example), [{**out["row"], "per_example": out["per_example"]}],
                           args.overwrite)
    if args.adversarial_csv:
        write_csv(args.adversarial_csv, adversarial_rows(model, out["per_example"], out["row"]["name"], keep),
                  overwrite=args.overwrite)
    if args.overlap:
        from ..analysis.discrete import overlap  # deferred: `advviz --help` must not load it

        ov = overlap(model, out["per_example"], args.overlap, overlap_values, args.attack_seed)
        out["row"]["overlap"] = {k: v for k, v in ov.items() if k != "examples"}
    res["attacks"] = [out["row"]]
    if args.json:
        print(dumps(res))
        return 0
    a = out["row"]
    print(f"{name}/{args.split}: accuracy {res['accuracy']:.4f}  macro-F1 {res['macro_f1']:.4f}  "
          f"loss {res['loss']:.4f}  n {res['n']}")
    pws = "-" if a["perturbed_word_share"] is None else f"{a['perturbed_word_share']:.4f}"
    asr = "-" if a["attack_success_rate"] is None else f"{a['attack_success_rate']:.4f}"
    mq = "-" if a["mean_queries"] is None else f"{a['mean_queries']:.1f}"
    print(f"  {a['name']}: accuracy {a['accuracy']:.4f} (clean {a['clean_accuracy']:.4f})  success rate {asr}  "
          f"queries {mq}  perturbed words {pws}  "
          f"succeeded/failed/skipped {a['succeeded']}/{a['failed']}/{a['skipped']}  "
          f"{a['examples_per_second']:.2f} examples/s")
    if a.get("variant"):
        print(f"  variant: {a['variant']}")
    if a.get("overlap"):
        o = a["overlap"]
        share = "-" if o["share"] is None else f"{o['share']:.4f}"
        chance = "-" if o["chance_share"] is None else f"{o['chance_share']:.4f}"
        print(f"  changed words among the top-3 ‖δ‖ tokens under {args.overlap}: {share} (chance {chance}; "
              f"{o['n_changed']} words in {o['n_examples']} successful examples)")
    if args.adversarial_csv:
        print(f"  wrote {a['succeeded']} adversarial examples to {args.adversarial_csv} (advviz train --augment)")
    return 0
