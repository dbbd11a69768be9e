"""Checkpoints: a directory of safetensors + JSON + plain-text vocabulary. Never pickle.

    DIR/config.json         model/tokenizer/data/method/training config, versions
    DIR/model.safetensors   classifier weights (+ ``extra.<name>.*`` for method heads)
    DIR/vocab.txt | HF tokenizer files
    DIR/metrics.json        dev_accuracy, steps, train_examples_per_s, train_seconds, ...
    DIR/train_log.jsonl     one JSON object per logged step / evaluation

A checkpoint is written to a temporary sibling and renamed into place, so a reader never sees a
half-written directory (a crash leaves the previous checkpoint, or nothing, plus a ``.tmp`` dir).
"""

from __future__ import annotations

import os
import platform
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..errors import AdvvizError, first_line
from ..methods.rar import RARHead
from ..models import Classifier, model_from_config
from ..tokenizers import load_tokenizer
from ..version import __version__
from . import outdir
from .jsonio import dumps, read_json
from .schema import check_config

FORMAT_VERSION = 1
# Files a checkpoint may contain; anything else (a *.bin, *.pt, *.pkl) is never read.
ALLOWED_FILES = {"config.json", "model.safetensors", "metrics.json", "train_log.jsonl", "vocab.txt",
                 "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "eval.json"}


def versions() -> dict[str, str]:
    import transformers  # optional and slow to import: loaded only when used

    return {"advviz": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def stored(model: Classifier, extras: dict[str, torch.nn.Module]) -> Iterator[tuple[str, torch.Tensor]]:
    """(key, tensor) of every tensor a checkpoint stores for these modules: the classifier's state
    and ``extra.<name>.*`` of each head, a tensor tied to one already taken (RAR decoder =
    embedding) only once — the module re-ties it on load. Tied tensors are recognised by their
    storage, or on the meta device (which has none) by being the same Parameter object."""
    seen: set[int] = set()
    modules = {"": model, **{f"extra.{k}.": v for k, v in extras.items()}}
    for prefix, mod in modules.items():
        for k, v in mod.state_dict(keep_vars=True).items():
            ident = id(v) if v.is_meta else v.data_ptr()
            if ident in seen and v.numel() > 0:
                continue
            seen.add(ident)
            yield prefix + k, v


def state_tensors(model: Classifier, extras: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    """CPU copies of what a checkpoint stores for these modules (:func:`stored`)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in stored(model, extras)}


def state_shapes(model: Classifier, extras: dict[str, torch.nn.Module]) -> dict[str, tuple]:
    """The keys (and shapes) :func:`state_tensors` writes for these modules, nothing copied."""
    return {k: tuple(v.shape) for k, v in stored(model, extras)}


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def fsync_dir_files(d: Path) -> None:
    """Make a directory's bytes durable before a rename makes them visible."""
    for p in d.iterdir():
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())


@contextmanager
def atomic_dir(target: Path, failure: str, what: str, kind: str = outdir.CHECKPOINT) -> Iterator[Path]:
    """Write a whole directory atomically: yields an empty hidden sibling of ``target`` to fill;
    when the block ends its files are made durable and it replaces ``target`` whole
    (:func:`outdir.replace_dir`). If anything fails the sibling is removed and ``target`` stays as it was;
    an ``OSError`` becomes one ``AdvvizError`` line:
    ``"{failure}: {reason}; the previous {what} (if any) is intact"``.

    ``target`` must be absent, empty, or advviz's own directory of ``kind``
    (:func:`advviz.storage.outdir.check_replaceable`), checked before writing and again before the swap;
    anything else is refused and left untouched."""
    target = Path(os.path.abspath(target))
    outdir.check_replaceable(target, kind)
    tmp = outdir.temp_sibling(target)
    try:
        tmp.mkdir(parents=True)  # outside the cleanup below: a name already taken is not ours to remove
    except OSError as e:
        raise AdvvizError(f"{failure}: {e.strerror or e}; the previous {what} (if any) is intact") from None
    try:
        yield tmp
        fsync_dir_files(tmp)
        outdir.check_replaceable(target, kind)
        outdir.replace_dir(tmp, target)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise AdvvizError(f"{failure}: {e.strerror or e}; the previous {what} (if any) is intact") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    """Replace one JSON file of a checkpoint atomically (temp file + rename)."""
    outdir.replace_atomically(path, lambda tmp: _write_json(tmp, obj))


def save_checkpoint(directory: str | os.PathLike, model: Classifier, config: dict, metrics: dict,
                    log_lines: list[dict] | None = None,
                    extras: dict[str, torch.nn.Module] | None = None) -> Path:
    """Write a complete checkpoint atomically (temp sibling + rename). Returns the directory."""
    directory = Path(directory)
    extras = extras or {}
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AdvvizError(f"cannot write checkpoint under {directory.parent}: {e.strerror}") from None
    with atomic_dir(directory, f"could not save checkpoint to {directory}", "checkpoint") as tmp:
        full_config = {"format_version": FORMAT_VERSION, **config, "model": model.config_dict(),
                       "tokenizer": model.tokenizer.meta(), "extras": sorted(extras),
                       "versions": versions()}
        _write_json(tmp / "config.json", full_config)
        save_file(state_tensors(model, extras), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        model.tokenizer.save(tmp)
        _write_json(tmp / "metrics.json", metrics)
        with open(tmp / "train_log.jsonl", "w", encoding="utf-8") as f:
            for line in log_lines or []:
                f.write(dumps(line) + "\n")
    return directory


@dataclass
class Checkpoint:
    directory: Path
    model: Classifier
    config: dict
    metrics: dict
    extra_state: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # name -> state dict

    @property
    def label_names(self) -> list[str]:
        return self.config["data"]["label_names"]

    @property
    def name(self) -> str:
        return self.directory.name


def _read_json(path: Path, expect: type | None = None) -> Any:
    """A checkpoint's JSON file: a regular file, bounded in size and depth (:mod:`advviz.storage.jsonio`)."""
    return read_json(path, expect=expect)


# Serialised-object formats that must never be deserialised: pickle protocols 2-5 and the zip
# container of torch.save. A checkpoint holding one is refused outright, whatever the file name.
PICKLE_PREFIXES = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04")
_PATH_KEYS = ("file", "files", "path", "dir", "filename")


def is_safetensors(head: bytes, size: int) -> bool:
    """The first 9 bytes of a file of ``size`` bytes open a safetensors file: a little-endian u64
    header length that fits in the file, then the header's JSON object. Such a file is never a
    loadable pickle: with a header under 2⁴⁸ bytes its bytes 6–7 are 0, which no pickle opcode is."""
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= size - 8 and n < 2**48 and head[8:9] == b"{"


def looks_like_pickle(head: bytes, size: int | None = None) -> bool:
    """The first bytes of a file (9 suffice) are a pickle or torch.save signature, what a checkpoint
    may not hold. A safetensors file whose header length is 0x0280–0x0580 (mod 2¹⁶) starts with the
    same two bytes; given the file's ``size``, such a file is recognised and passes."""
    if not head.startswith(PICKLE_PREFIXES):
        return False
    return not (size is not None and is_safetensors(head, size))


def verify_checkpoint_dir(directory: Path) -> None:
    """Refuse symlinks (nothing outside the directory is ever read) and any file that holds a
    pickle / torch.save payload; advviz itself reads only a fixed list of names inside it."""
    for p in [directory, *directory.rglob("*")]:
        if p.is_symlink():
            raise AdvvizError(f"refusing checkpoint {directory}: {p.name} is a symbolic link")
        if p.is_file():
            with open(p, "rb") as f:
                head = f.read(9)
            if looks_like_pickle(head, p.stat().st_size):
                raise AdvvizError(f"refusing checkpoint {directory}: {p.relative_to(directory)} holds a pickle or "
                                  f"torch.save payload (advviz checkpoints are safetensors + JSON only)")


def _check_no_paths(obj, where: str) -> None:
    """config.json never names files to open; a file-ish key with a path in it is tampering."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if (isinstance(v, str) and k != "_name_or_path" and k.lower().endswith(_PATH_KEYS)
                    and ("/" in v or "\\" in v or ".." in v)):
                raise AdvvizError(f"refusing {where}: '{k}' names a path ({v[:60]!r})")
            _check_no_paths(v, where)
    elif isinstance(obj, list):
        for v in obj:
            _check_no_paths(v, where)


def check_tensors(weights: Path, expected: dict[str, torch.Tensor]) -> None:
    """The safetensors file ``weights`` holds exactly the tensors ``expected`` (meta tensors of the
    modules config.json describes, as :func:`stored` lists them): none missing, none extra, each of
    its shape, and floating-point where a float is expected. Only the file's header is read,
    nothing allocated; a difference is one line naming the first tensors that differ."""
    try:
        with safe_open(str(weights), "pt") as f:
            found = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise AdvvizError(f"{weights} is unreadable or truncated ({first_line(e)})") from None

    def refuse(problem: str, names: list[str]) -> None:
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        raise AdvvizError(f"{weights} does not match config.json: {problem} {', '.join(names[:3])}{more}")

    unexpected = sorted(set(found) - set(expected))
    if unexpected:
        refuse("config.json describes no tensor named", unexpected)
    missing = sorted(set(expected) - set(found))
    if missing:
        refuse("the file lacks", missing)
    shapes = [f"{k} {found[k][0]} vs {tuple(v.shape)}" for k, v in expected.items() if found[k][0] != tuple(v.shape)]
    if shapes:
        refuse("shapes differ (file vs config):", shapes)
    dtypes = [f"{k} ({found[k][1]})" for k, v in expected.items()
              if v.dtype.is_floating_point and not found[k][1].startswith(("F", "BF"))]
    if dtypes:
        refuse("floating-point weights are stored as other values:", dtypes)


def _extra_head(name: str, classifier: Classifier, method: dict) -> torch.nn.Module:
    """The method head ``name`` (one of ``schema.EXTRA_HEADS``) around ``classifier``, as the
    method that trained it built it from its recorded settings ``method``."""
    heads = {"rar": lambda: RARHead.for_classifier(classifier, method.get("rar_head", "ln-first"))}
    return heads[name]()


def _expected_tensors(directory: Path, config: dict, tokenizer) -> dict[str, torch.Tensor]:
    """What model.safetensors must hold for this (validated) config: built on the meta device, so a
    config describing a 40 GB model allocates nothing."""
    try:
        with torch.device("meta"):
            model = model_from_config(config["model"], tokenizer)
            extras = {n: _extra_head(n, model, config.get("method") or {}) for n in config.get("extras") or []}
            return dict(stored(model, extras))
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
        raise AdvvizError(f"{directory}/config.json does not describe a model advviz can build "
                          f"({first_line(e)})") from None


def _check_positions(directory: Path, config: dict, tokenizer) -> None:
    """A transformer reads at most its position embeddings' worth of tokens: a tokenizer
    max_length beyond that would fail at the first long text, so it is refused here."""
    model = config["model"]
    if model["family"] not in ("hf", "hf-seq"):
        return
    # an int if present (schema)
    positions = (model.get("encoder_config") or model.get("hf_config")).get("max_position_embeddings")
    if positions is not None and tokenizer.max_length > positions:
        raise AdvvizError(f"{directory}/config.json: tokenizer max_length {tokenizer.max_length} is more than the "
                          f"encoder's {positions} positions")


def check_format(directory: Path, config: dict) -> None:
    """One line for a checkpoint this advviz cannot read: written in a newer checkpoint format (by a
    newer advviz: both versions named), or with a format_version that is not a format number."""
    fv = config.get("format_version", FORMAT_VERSION)  # checkpoints before the field: format 1
    if isinstance(fv, bool) or not isinstance(fv, int) or fv < 1:
        raise AdvvizError(f"{directory}/config.json: format_version {fv!r} is not a checkpoint format advviz knows")
    if fv > FORMAT_VERSION:
        versions = config.get("versions")
        by = versions.get("advviz") if isinstance(versions, dict) and isinstance(versions.get("advviz"), str) else None
        raise AdvvizError(f"{directory} was written by a newer advviz{f' ({by})' if by else ''} in checkpoint format {fv}; "
                          f"this advviz {__version__} reads format {FORMAT_VERSION} and older: upgrade advviz "
                          f"(pip install --upgrade advviz)")


def load_checkpoint(directory: str | os.PathLike, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild a model from a checkpoint directory (safetensors + JSON only; see verify_checkpoint_dir).

    Everything is checked before anything is built: config.json against its schema
    (:func:`advviz.storage.schema.check_config`), then the weights' header against the modules
    that config describes (:func:`check_tensors`, on the meta device)."""
    directory = Path(directory)
    if not (directory / "config.json").is_file() or not (directory / "model.safetensors").is_file():
        raise AdvvizError(f"{directory} is not an advviz checkpoint (needs config.json and model.safetensors)")
    verify_checkpoint_dir(directory)
    config = _read_json(directory / "config.json")
    metrics = _read_json(directory / "metrics.json", dict) if (directory / "metrics.json").is_file() else {}
    if isinstance(config, dict):  # first, so a newer advviz's checkpoint is named as such, not as invalid
        check_format(directory, config)
    check_config(config, f"{directory}/config.json")
    # only these sections drive loading; "train" records e.g. the data directory, informational
    _check_no_paths({"model": config.get("model"), "tokenizer": config.get("tokenizer")}, f"{directory}/config.json")
    try:
        tokenizer = load_tokenizer(directory, config["tokenizer"])
    except (KeyError, TypeError, ValueError, OSError) as e:
        raise AdvvizError(f"{directory}: the tokenizer files do not load ({type(e).__name__}: {first_line(e)})") from None
    _check_positions(directory, config, tokenizer)
    check_tensors(directory / "model.safetensors", _expected_tensors(directory, config, tokenizer))
    try:
        model = model_from_config(config["model"], tokenizer)
        tensors = load_file(str(directory / "model.safetensors"))
    except (KeyError, TypeError, ValueError) as e:
        raise AdvvizError(f"{directory}/config.json does not describe a model advviz can build ({first_line(e)})") from None
    except (SafetensorError, OSError) as e:
        raise AdvvizError(f"{directory}/model.safetensors is unreadable or truncated ({first_line(e)})") from None
    if len(tokenizer.vocab) > model.embedding_matrix().shape[0]:
        raise AdvvizError(f"{directory}: the tokenizer has {len(tokenizer.vocab)} entries but the embedding "
                          f"matrix only {model.embedding_matrix().shape[0]} rows")
    # the key set was checked exactly; a weight tied to another (stored once) is re-tied by the module
    model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("extra.")}, strict=False)
    extra_state: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():  # each extra.<head>.<tensor> was expected of a head config.json names
        if k.startswith("extra."):
            _, name, rest = k.split(".", 2)
            extra_state.setdefault(name, {})[rest] = v
    # what an attack may need to know about how the model was trained (UAE's label-free loss:
    # a RAR head's reconstruction loss, CARL's contrastive loss): the method's recorded settings
    # and the method heads' tensors, as plain attributes beside the weights
    method = config.get("method")
    model.trained_with = dict(method) if isinstance(method, dict) else {}
    model.extra_state = extra_state
    model.to(device).eval()
    return Checkpoint(directory, model, config, metrics, extra_state)
