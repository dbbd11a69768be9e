"""``advviz import`` and ``advviz export``: Hugging Face classifiers in and out (advviz/transfer.py)."""

from __future__ import annotations

from .. import registry
from ..limits import check_positive
from ..transfer import export_hf, import_model


def add_parsers(sub, eval_parser, argv: list[str]) -> None:
    p = sub.add_parser("import", help="make an advviz checkpoint of a Hugging Face sequence classifier (a folder "
                                      "written by save_pretrained, or a hub id)")
    p.add_argument("source", metavar="SRC", help="a folder holding a *ForSequenceClassification model and its "
                                                 "tokenizer, or a Hugging Face hub id (needs the hub)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="the checkpoint directory: new or empty (an advviz checkpoint with --overwrite)")
    where.add_argument("--name", help="a name under the models root ($ADVVIZ_MODELS_DIR or models/), as the app lists it")
    p.add_argument("--dataset", default=None, help="the data set eval/words/inspect use by default (e.g. sst2-sent)")
    p.add_argument("--max-length", type=int, default=None,
                   help="tokens per text (default: what the model takes, at most 512)")
    p.add_argument("--label-map", default=None, metavar="OLD=NEW,...",
                   help="rename the model's labels (config.id2label), e.g. LABEL_0=negative,LABEL_1=positive, "
                        "to those of the data set it is evaluated on")
    p.add_argument("--overwrite", action="store_true", help="replace the advviz checkpoint already at --out "
                                                           "(a folder holding anything else is never replaced)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="write a transformer checkpoint as a folder transformers loads "
                                      "(AutoModelForSequenceClassification, pipeline)")
    p.add_argument("checkpoint")
    p.add_argument("--format", required=True, choices=["hf"], help="hf: a Hugging Face save_pretrained folder")
    p.add_argument("--out", required=True, help="the folder: new or empty (an earlier export with --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace the advviz export already at --out "
                                                           "(a folder holding anything else is never replaced)")
    p.set_defaults(func=cmd_export)


def cmd_import(args) -> int:
    check_positive(args.max_length, "--max-length")
    out = args.out or registry.models_root() / registry.check_name(args.name)
    path = import_model(args.source, out, args.dataset, args.max_length, args.label_map, args.overwrite)
    print(f"imported {args.source}; checkpoint: {path}")
    return 0


def cmd_export(args) -> int:
    path = export_hf(args.checkpoint, args.out, args.overwrite)
    print(f"exported {args.checkpoint} as a Hugging Face folder: {path}")
    return 0
