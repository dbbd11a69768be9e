"""Your model in, your model out: Hugging Face sequence classifiers into advviz checkpoints
(``advviz import``, ``advviz train --init-from``) and advviz's transformer checkpoints back into
folders ``transformers`` loads with no advviz installed (``advviz export --format hf``).

Import keeps the model as it is (:class:`~advviz.models.hf_sequence.HFSequenceClassifier`: its own
head and pooling), with the label names of ``config.id2label`` (``LABEL_0`` kept unless
``--label-map`` renames it). Only safetensors weights are read (a ``pytorch_model.bin`` is a pickle,
which advviz never loads), and nothing is written into the source folder.

Export of advviz's own transformers (an encoder plus dropout→Linear(W, b) on the first token's
final hidden state h) uses a stock class whose head starts with a tanh layer, made the identity
to float32 precision: that layer gets weight I/s and bias 0, and the final Linear s·W and b, with
s = 2²⁰. Scaling by a power of two is exact, and s·tanh(h/s) = h·(1 − (h/s)²/3 + …) differs from
h by a relative 3·10⁻¹³·h² — below float32's 6·10⁻⁸ for |h| < 400. Mapped:

- BERT encoders (MiniLM): ``BertForSequenceClassification``; the pooler (dense + tanh on [CLS])
  is the identity layer, ``classifier`` = s·W.
- RoBERTa / XLM-R encoders: ``*ForSequenceClassification``; ``classifier.dense`` (+ tanh on
  <s>) is the identity layer, ``classifier.out_proj`` = s·W.

Other encoders (DistilBERT's head has a ReLU, which no scaling makes the identity) and RNN
checkpoints are refused with one line. What travels: the weights, the tokenizer files and
``id2label``; the RAR head, CARL's memory banks, metrics and caches stay in the checkpoint. The
folder gets ``advviz-export.json`` (where it came from, the mapping, the method and data), which
also marks it as advviz's own, so a later export may replace it with ``--overwrite``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from .errors import AdvvizError, first_line
from .models import Classifier, HFSequenceClassifier
from .models.hf_sequence import position_limit
from .storage import outdir
from .storage.checkpoint import Checkpoint, atomic_dir, load_checkpoint, save_checkpoint, versions
from .storage.jsonio import dumps, read_json
from .tokenizers import HFTokenizer

IMPORTED = "imported"  # the method name of an imported model (Models page, registry)
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
DEFAULT_MAX_LENGTH = 512
SCALE = 2.0 ** 20
#: advviz encoder model_type -> (the tanh layer made the identity, the final Linear), both in the stock class
EXPORT_LAYOUTS = {"bert": ("bert.pooler.dense", "classifier"),
                  "roberta": ("classifier.dense", "classifier.out_proj"),
                  "xlm-roberta": ("classifier.dense", "classifier.out_proj")}


# --------------------------------------------------------------------------------------------
# import


def read_source(src: str, max_length: int | None = None) -> HFSequenceClassifier:
    """The sequence classifier saved in the folder (or hub id) ``src``, as it is, in float32 and
    eval mode; anything that is not one is refused with one line naming what it is."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer  # lazy: heavy

    local = Path(src).expanduser()
    if os.path.lexists(local):
        if not local.is_dir():
            raise AdvvizError(f"{src} is a file; advviz import reads a folder written by save_pretrained (or a hub id)")
        if not (local / "config.json").is_file():
            raise AdvvizError(f"{src} is not a Hugging Face model folder (no config.json); save the model with "
                              f"save_pretrained")
        where, kw = str(local.resolve()), {"local_files_only": True}
        if not any(local.glob("*.safetensors")):
            raise AdvvizError(f"{src} holds no safetensors weights; advviz never unpickles pytorch_model.bin — "
                              f"re-save it with save_pretrained(DIR, safe_serialization=True)")
    elif HUB_ID_RE.match(src):
        where, kw = src, {}
    else:
        raise AdvvizError(f"{src}: no such folder, and not a Hugging Face hub id")
    try:
        config = AutoConfig.from_pretrained(where, **kw)
    except (OSError, ValueError, KeyError) as e:
        if kw:
            raise AdvvizError(f"{src}/config.json is not a transformers config ({first_line(e, 120)})") from None
        raise AdvvizError(f"{src} is not a local folder and could not be read from the Hugging Face hub (offline, "
                          f"or no such model: {first_line(e, 120)})") from None
    check_classifier_config(config, src)
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(where, output_loading_info=True,
                                                                         use_safetensors=True, **kw)
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise AdvvizError(f"{src}: the weights do not load ({first_line(e, 160)})") from None
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise AdvvizError(f"{src} lacks trained weights for {', '.join(missing[:3])}"
                          f"{f' and {len(missing) - 3} more' if len(missing) > 3 else ''}: transformers would draw "
                          f"them at random, so it is not a trained classifier")
    try:
        hf_tok = AutoTokenizer.from_pretrained(where, **kw)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise AdvvizError(f"{src}: its tokenizer does not load ({first_line(e, 120)}); save it beside the model "
                          f"with tokenizer.save_pretrained") from None
    limit = position_limit(config)
    tok_limit = getattr(hf_tok, "model_max_length", None)
    if isinstance(tok_limit, int) and tok_limit < 10**6:
        limit = min(limit, tok_limit) if limit else tok_limit
    if max_length is None:
        max_length = min(DEFAULT_MAX_LENGTH, limit or DEFAULT_MAX_LENGTH)
    elif limit and max_length > limit:
        raise AdvvizError(f"--max-length {max_length} is more than {src} takes ({limit} positions)")
    tokenizer = HFTokenizer(hf_tok, max_length)
    if len(tokenizer.vocab) > model.get_input_embeddings().num_embeddings:
        raise AdvvizError(f"{src}: the tokenizer has {len(tokenizer.vocab)} entries but the embedding matrix only "
                          f"{model.get_input_embeddings().num_embeddings} rows; it is not this model's tokenizer")
    source = src if not kw else str(local.resolve())
    try:
        return HFSequenceClassifier(model.float().eval(), tokenizer, config.model_type, source)
    except ValueError as e:
        raise AdvvizError(f"{src}: {e}") from None


def check_classifier_config(config, src: str) -> None:
    """A single-label classifier of two or more classes with a sequence-classification head."""
    archs = list(getattr(config, "architectures", None) or [])
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        what = archs[0] if archs else f"{config.model_type} model with no architectures entry"
        raise AdvvizError(f"{src} holds a {what}, not a sequence classifier; advviz imports "
                          f"*ForSequenceClassification models (AutoModelForSequenceClassification + save_pretrained)")
    if config.problem_type == "regression" or config.num_labels < 2:
        raise AdvvizError(f"{src} is a regression model (num_labels {config.num_labels}); advviz imports "
                          f"classifiers of two or more classes")
    if config.problem_type == "multi_label_classification":
        raise AdvvizError(f"{src} is a multi-label classifier (a sigmoid per class); advviz imports single-label "
                          f"classifiers (one softmax over the classes)")


def label_names_of(config, label_map: str | None = None) -> list[str]:
    """``config.id2label`` in class order, renamed by ``--label-map OLD=NEW,...`` (every NEW distinct)."""
    names = [str(config.id2label[i]) for i in range(config.num_labels)]
    if not label_map:
        return names
    pairs = {}
    for part in label_map.split(","):
        old, eq, new = (x.strip() for x in part.partition("="))
        if not eq or not old or not new:
            raise AdvvizError(f"--label-map: {part.strip()!r} is not OLD=NEW (e.g. LABEL_0=negative,LABEL_1=positive)")
        if old not in names:
            raise AdvvizError(f"--label-map: the model has no label {old!r} (its labels: {', '.join(names)})")
        pairs[old] = new
    renamed = [pairs.get(n, n) for n in names]
    if len(set(renamed)) < len(renamed):
        raise AdvvizError(f"--label-map gives two classes one name ({', '.join(renamed)})")
    return renamed


def import_model(src: str, out: str | os.PathLike, dataset: str | None = None, max_length: int | None = None,
                 label_map: str | None = None, overwrite: bool = False) -> Path:
    """Write the advviz checkpoint of the classifier ``src`` to ``out`` (absent or empty; advviz's
    own checkpoint only with ``overwrite``); returns ``out``."""
    out = Path(os.path.abspath(out))
    local = Path(src).expanduser()
    if os.path.lexists(local):
        real, target = local.resolve(), Path(os.path.realpath(out))
        if target == real or real in target.parents:
            raise AdvvizError(f"--out {out} lies inside {src}; advviz never writes into the folder it imports")
    if outdir.check_replaceable(out, outdir.CHECKPOINT) == outdir.CHECKPOINT and not overwrite:
        raise AdvvizError(f"{out} already holds a checkpoint; pass --overwrite to replace it")
    model = read_source(src, max_length)
    names = label_names_of(model.hf.config, label_map)
    config = {"data": {"name": dataset or IMPORTED, "label_names": names},
              "method": {"name": IMPORTED, "source": model.source},
              "train": {"arch": model.arch, "method": IMPORTED, "dataset": dataset}}
    metrics = {"parameters": model.num_parameters(), "imported_from": model.source}
    return save_checkpoint(out, model, config, metrics)


# --------------------------------------------------------------------------------------------
# train --init-from


def is_advviz_checkpoint(path: Path) -> bool:
    return outdir.ownership(path)[0] == outdir.CHECKPOINT


def source_arch(src: str) -> str:
    """The ``--arch`` of ``--init-from src``, read without loading weights."""
    path = Path(src).expanduser()
    if is_advviz_checkpoint(path):
        model = (read_json(path / "config.json") or {}).get("model") if (path / "config.json").is_file() else None
        arch = model.get("arch") if isinstance(model, dict) else None
        if not isinstance(arch, str):
            raise AdvvizError(f"{src}/config.json names no model arch")
        return arch
    if (path / "config.json").is_file():
        cfg = read_json(path / "config.json")
        if isinstance(cfg, dict) and isinstance(cfg.get("model_type"), str):
            return cfg["model_type"]
    return read_source(src).arch


def initial_model(src: str) -> tuple[Classifier, list[str]]:
    """(model, its label names) to start ``advviz train --init-from src`` from: an advviz
    checkpoint of a transformer (its head kept; method heads such as RAR's are not), or anything
    ``advviz import`` reads."""
    path = Path(src).expanduser()
    if not is_advviz_checkpoint(path):
        model = read_source(src)
        return model, label_names_of(model.hf.config)
    ck = load_checkpoint(path)
    if ck.config["model"]["family"] == "rnn":
        raise AdvvizError(f"--init-from {src}: an {ck.model.arch} checkpoint; --init-from continues a transformer "
                          f"(an imported model, MiniLM or a hub encoder) — train an RNN afresh with --arch")
    ck.model.trained_with, ck.model.extra_state = {}, {}
    return ck.model, ck.label_names


# --------------------------------------------------------------------------------------------
# export


def stock_model(ck: Checkpoint):
    """The transformers ``*ForSequenceClassification`` computing what the checkpoint's classifier
    computes (see the module doc for the mapping), with its label names as ``id2label``."""
    from transformers import CONFIG_MAPPING, AutoModelForSequenceClassification  # lazy: heavy

    model, names = ck.model, ck.label_names
    family = ck.config["model"]["family"]
    if family == "rnn":
        raise AdvvizError(f"{ck.directory} is an {model.arch} checkpoint: no transformers class holds an RNN; "
                          f"--format hf exports MiniLM, BERT/RoBERTa encoders and imported models")
    if family == "hf-seq":
        hf = model.hf
    else:
        enc = model.encoder
        layout = EXPORT_LAYOUTS.get(enc.config.model_type)
        if layout is None:
            raise AdvvizError(f"{ck.directory}: its {enc.config.model_type} encoder has no stock classification head "
                              f"advviz can map its [CLS] head onto exactly; --format hf exports "
                              f"{', '.join(EXPORT_LAYOUTS)} encoders and imported models")
        cfg = CONFIG_MAPPING[enc.config.model_type].from_dict(enc.config.to_dict())
        cfg.num_labels = model.num_labels
        hf = AutoModelForSequenceClassification.from_config(cfg)
        cfg.architectures = [type(hf).__name__]
        missing, unexpected = hf.base_model.load_state_dict(enc.state_dict(), strict=False)
        if [k for k in [*missing, *unexpected] if not k.startswith("pooler.")]:
            raise AdvvizError(f"{ck.directory}: the encoder's weights do not fit {type(hf).__name__} "
                              f"({', '.join([*missing, *unexpected][:3])})")
        identity, final = (hf.get_submodule(n) for n in layout)
        with torch.no_grad():
            identity.weight.copy_(torch.eye(identity.weight.shape[0]) / SCALE)
            identity.bias.zero_()
            final.weight.copy_(model.head.weight.detach().cpu() * SCALE)
            final.bias.copy_(model.head.bias.detach().cpu())
    hf.config.id2label = dict(enumerate(names))
    hf.config.label2id = {n: i for i, n in enumerate(names)}
    hf.config.problem_type = "single_label_classification"
    return hf.eval()


def export_hf(checkpoint: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write checkpoint ``checkpoint`` as a transformers folder at ``out`` (absent or empty; an
    earlier export only with ``overwrite``); returns ``out``."""
    out = Path(os.path.abspath(out))
    found = outdir.check_replaceable(out, outdir.HF_EXPORT)
    if found == outdir.HF_EXPORT and not overwrite:
        raise AdvvizError(f"{out} already holds an advviz export; pass --overwrite to replace it")
    ck = load_checkpoint(checkpoint)
    hf = stock_model(ck)
    family = ck.config["model"]["family"]
    record = {"exported_from": str(Path(checkpoint).resolve()), "class": type(hf).__name__,
              "mapping": ("the imported model as it is" if family == "hf-seq" else
                          f"identity to float32: {EXPORT_LAYOUTS[hf.config.model_type][0]} = I/2^20, "
                          f"bias 0; {EXPORT_LAYOUTS[hf.config.model_type][1]} = 2^20 * W"),
              "label_names": ck.label_names, "method": ck.config.get("method"),
              "data": {k: ck.config["data"].get(k) for k in ("name", "label_names")},
              "stays_behind": "RAR head, memory banks, metrics.json, train_log.jsonl, eval.json, cache/",
              "versions": versions()}
    with atomic_dir(out, f"could not export to {out}", "export", kind=outdir.HF_EXPORT) as tmp:
        hf.save_pretrained(str(tmp))
        ck.model.tokenizer.hf.save_pretrained(str(tmp))
        (tmp / outdir.HF_EXPORT_MARKER).write_text(dumps(record, indent=2) + "\n", encoding="utf-8")
    return out
