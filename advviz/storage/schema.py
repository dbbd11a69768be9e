"""What a checkpoint's config.json must hold, checked once, before anything is built from it.

config.json is input like any other (a shared checkpoint may have been edited by anyone), so every
field advviz reads from it — to build the model and tokenizer, to name the data set and its labels,
to rebuild a method head, to find the training data again — is checked here for its type and
range, and the sections against each other (the tokenizer kind fits the model family; one label
name per class). A failure is one line naming the field:

    DIR/config.json does not describe a model advviz can build: model.hidden_size must be an
    integer in 1..16,777,216, found 1000000000

Code after :func:`check_config` may index these fields without guarding each access. What advviz
does not read (``versions``, ``model_options``, the split facts under ``data``, a method's own
settings) is a record, not an input, and is left free.

The bounds are :data:`advviz.limits.MAX_DIM` and ``MAX_LAYERS`` (the same training enforces). A
config that passes must still match the weights tensor for tensor (``checkpoint.check_tensors``).
Language models (``advviz lm``) have their own, smaller config: :func:`check_lm_config`.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from ..config import RNN_ARCHS
from ..errors import AdvvizError
from ..limits import MAX_DIM, MAX_LAYERS, MAX_SEED
from ..methods.rar import HEAD_LAYOUTS

#: method heads a checkpoint may carry beside the classifier (its ``extra.<name>.*`` tensors)
EXTRA_HEADS = ("rar",)
#: the tokenizer kinds each model family reads
FAMILY_TOKENIZERS = {"rnn": ("word", "char"), "hf": ("hf",), "hf-seq": ("hf",)}

Check = Callable[[Any, str], None]


class Invalid(Exception):
    """One field that is missing or of the wrong type or range; the message names its path."""


def shown(value: Any) -> str:
    """A short rendering of a JSON value for a message."""
    if isinstance(value, (dict, list)):
        return f"{'an object' if isinstance(value, dict) else 'a list'} of {len(value)}"
    s = repr(value)
    return s if len(s) <= 40 else s[:37] + "..."


def bad(path: str, want: str, value: Any) -> Invalid:
    return Invalid(f"{path} must be {want}, found {shown(value)}")


def integer(lo: int, hi: int) -> Check:
    def check(v, path):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise bad(path, f"an integer in {lo:,}..{hi:,}", v)
    return check


def fraction(v, path) -> None:
    """A number in [0, 1) (a dropout probability)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and 0 <= v < 1):
        raise bad(path, "a number in [0, 1)", v)


def boolean(v, path) -> None:
    if not isinstance(v, bool):
        raise bad(path, "true or false", v)


def text(v, path) -> None:
    if not isinstance(v, str) or not v:
        raise bad(path, "a non-empty string", v)


def one_of(*choices: str) -> Check:
    def check(v, path):
        if not isinstance(v, str) or v not in choices:
            raise bad(path, "one of " + ", ".join(choices), v)
    return check


def optional(check: Check) -> Check:
    """``check``, or null."""
    def opt(v, path):
        if v is not None:
            check(v, path)
    return opt


def list_of(item: Check, min_len: int = 0) -> Check:
    """A list of distinct items, each passing ``item``."""
    def check(v, path):
        if not isinstance(v, list) or len(v) < min_len:
            raise bad(path, f"a list of at least {min_len}" if min_len else "a list", v)
        for i, x in enumerate(v):
            item(x, f"{path}[{i}]")
        if len(set(map(repr, v))) < len(v):
            raise Invalid(f"{path} names an entry twice")
    return check


def mapping(fields: dict[str, Check], required: tuple[str, ...] = ()) -> Check:
    """An object whose listed fields pass their checks (``required`` ones present); other keys
    are records advviz does not read."""
    def check(v, path):
        if not isinstance(v, dict):
            raise bad(path or "the file", "an object", v)
        for k in required:
            if k not in v:
                raise Invalid(f"{_join(path, k)} is missing")
        for k, c in fields.items():
            if k in v:
                c(v[k], _join(path, k))
    return check


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def label_mapping(v, path) -> None:
    """``{"name": class id}`` of a data set whose labels were names."""
    if not isinstance(v, dict):
        raise bad(path, "an object", v)
    for k, i in v.items():
        integer(0, MAX_DIM)(i, f"{path}[{k!r}]")


DIM = integer(1, MAX_DIM)


def str_value(v, path) -> None:
    if not isinstance(v, str):
        raise bad(path, "a string", v)


#: a transformers config dict: every size a model is allocated by (DistilBERT names them dim/n_layers)
HF_CONFIG = mapping({"model_type": text, "hidden_size": DIM, "intermediate_size": DIM, "num_attention_heads": DIM,
                     "vocab_size": DIM, "embedding_size": DIM, "max_position_embeddings": DIM,
                     "type_vocab_size": DIM, "num_hidden_layers": integer(1, MAX_LAYERS), "dim": DIM,
                     "hidden_dim": DIM, "n_heads": DIM, "n_layers": integer(1, MAX_LAYERS)},
                    required=("model_type",))
POSITIVE = integer(1, 2**63 - 1)  # a count nothing is allocated by (tokens per text)
NUM_LABELS = integer(2, MAX_DIM)
MODELS: dict[str, Check] = {
    "rnn": mapping({"arch": one_of(*RNN_ARCHS), "num_labels": NUM_LABELS, "cell": one_of("lstm", "gru"),
                    "bidirectional": boolean, "embedding_dim": DIM, "hidden_size": DIM,
                    "mlp_hidden": integer(0, MAX_DIM), "dropout": fraction, "vocab_size": integer(2, MAX_DIM)},
                   required=("arch", "num_labels", "cell", "bidirectional", "embedding_dim", "hidden_size",
                             "mlp_hidden", "dropout", "vocab_size")),
    "hf": mapping({"arch": text, "num_labels": NUM_LABELS, "dropout": fraction, "encoder_config": HF_CONFIG},
                  required=("arch", "num_labels", "dropout", "encoder_config")),
    # an imported *ForSequenceClassification (models/hf_sequence.py): its own transformers config
    "hf-seq": mapping({"arch": text, "num_labels": NUM_LABELS, "source": str_value, "hf_config": HF_CONFIG},
                      required=("arch", "num_labels", "hf_config")),
}


def sections() -> dict[str, Check]:
    kinds = sorted({k for ks in FAMILY_TOKENIZERS.values() for k in ks})
    return {
        "model": mapping({"family": one_of(*MODELS)}, required=("family",)),
        "tokenizer": mapping({"kind": one_of(*kinds), "max_length": POSITIVE, "lowercase": boolean}, required=("kind",)),
        "data": mapping({"name": text, "label_names": list_of(text, min_len=2),
                         "label_mapping": optional(label_mapping)}, required=("name", "label_names")),
        "method": optional(mapping({"name": text, "rar_head": one_of(*HEAD_LAYOUTS)})),
        "extras": optional(list_of(one_of(*EXTRA_HEADS))),
        # where `words` finds the training data again (training frequency); what reports show
        "train": optional(mapping({"dataset": optional(text), "data_dir": optional(text),
                                   "text_col": optional(text), "label_col": optional(text),
                                   "max_train": optional(DIM), "seed": optional(integer(0, MAX_SEED)),
                                   "arch": optional(text), "method": optional(text)})),
    }


def check_config(config: Any, where: str) -> None:
    """Refuse a classifier's config.json that does not describe a checkpoint advviz can build and
    read (one :class:`AdvvizError` line naming ``where`` and the field; see the module doc). Its
    ``format_version`` is checked before, by :func:`advviz.storage.checkpoint.check_format`, which
    names the newer advviz that wrote it."""
    _refuse(lambda: _check(config), where)


LM_CONFIG = mapping({"model": mapping({"embedding_dim": DIM, "hidden_size": DIM, "num_layers": integer(1, MAX_LAYERS),
                                       "dropout": fraction, "tie_weights": boolean}),
                     "tokenizer": mapping({"kind": one_of("word"), "max_length": POSITIVE, "lowercase": boolean})},
                    required=("model", "tokenizer"))


def check_lm_config(config: Any, where: str) -> None:
    """The same for a language model's config.json (``advviz lm train``)."""
    _refuse(lambda: LM_CONFIG(config, ""), where)


def _refuse(check: Callable[[], None], where: str) -> None:
    try:
        check()
    except Invalid as e:
        raise AdvvizError(f"{where} does not describe a model advviz can build: {e}") from None


def _check(config: Any) -> None:
    mapping({}, required=("model", "tokenizer", "data"))(config, "")
    for name, check in sections().items():
        if name in config:
            check(config[name], name)
    model = config["model"]
    MODELS[model["family"]](model, "model")
    kinds = FAMILY_TOKENIZERS[model["family"]]
    if config["tokenizer"]["kind"] not in kinds:
        raise bad("tokenizer.kind", f"{' or '.join(kinds)} for a model of family {model['family']}",
                  config["tokenizer"]["kind"])
    if len(config["data"]["label_names"]) != model["num_labels"]:
        raise Invalid(f"data.label_names must name each of the model's {model['num_labels']} classes, "
                      f"found {len(config['data']['label_names'])} names")
