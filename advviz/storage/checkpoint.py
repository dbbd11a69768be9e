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
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from . import outdir
from ..errors import AdvvizError
from .jsonio import dumps, read_json
from ..models import Classifier, model_from_config
from ..tokenizers import load_tokenizer
from ..version import __version__

FORMAT_VERSION = 1
# Files a checkpoint may contain; anything else (a *.bin, *.pt, *.pkl) is never read.
ALLOWED_FILES = {"config.json", "model.safetensors", "metrics.json", "train_log.jsonl", "vocab.txt",
                 "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "eval.json"}


def versions() -> dict[str, str]:
    import numpy
    import transformers

    return {"advviz": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def state_tensors(model: Classifier, extras: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    """CPU copies of the classifier's weights and ``extra.<name>.*`` of each head; a tensor tied to
    one already taken (RAR decoder = embedding) is stored once and re-tied by the module on load."""
    tensors: dict[str, torch.Tensor] = {}
    seen: dict[int, str] = {}
    modules = {"": model, **{f"extra.{k}.": v for k, v in extras.items()}}
    for prefix, mod in modules.items():
        for k, v in mod.state_dict().items():
            key = prefix + k
            ptr = v.data_ptr()
            if ptr in seen and v.numel() > 0:  # tied weight (e.g. RAR decoder = embedding): store once
                continue
            seen[ptr] = key
            tensors[key] = v.detach().to("cpu").contiguous().clone()
    return tensors


def state_shapes(model: Classifier, extras: dict[str, torch.nn.Module]) -> dict[str, tuple]:
    """The keys (and shapes) :func:`state_tensors` writes for these modules, nothing copied."""
    shapes: dict[str, tuple] = {}
    seen: set[int] = set()
    modules = {"": model, **{f"extra.{k}.": v for k, v in extras.items()}}
    for prefix, mod in modules.items():
        for k, v in mod.state_dict(keep_vars=True).items():
            ptr = v.data_ptr()
            if ptr in seen and v.numel() > 0:
                continue
            seen.add(ptr)
            shapes[prefix + k] = tuple(v.shape)
    return shapes


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def fsync_dir_files(d: Path) -> None:
    """Make a directory's bytes durable before a rename makes them visible."""
    for p in d.iterdir():
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())


def replace_dir(tmp: Path, target: Path) -> None:
    """Put the complete directory ``tmp`` at ``target``: the old one is moved aside first and moved
    back if the final rename fails, so a reader sees the old or the new directory, whole."""
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(target, old)
    try:
        os.rename(tmp, target)
    except OSError:
        if old is not None:
            os.rename(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_dir(target: Path, failure: str, what: str, kind: str = outdir.CHECKPOINT) -> Iterator[Path]:
    """Write a whole directory atomically: yields an empty hidden sibling of ``target`` to fill;
    when the block ends its files are made durable and it replaces ``target`` whole
    (:func:`replace_dir`). If anything fails the sibling is removed and ``target`` stays as it was;
    an ``OSError`` becomes one ``AdvvizError`` line:
    ``"{failure}: {reason}; the previous {what} (if any) is intact"``.

    ``target`` must be absent, empty, or advviz's own directory of ``kind``
    (:func:`advviz.storage.outdir.check_replaceable`), checked before writing and again before the swap;
    anything else is refused and left untouched."""
    target = Path(os.path.abspath(target))
    outdir.check_replaceable(target, kind)
    hidden = target.name if target.name.startswith(".") else f".{target.name}"
    tmp = target.parent / f"{hidden}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir(parents=True)
        yield tmp
        fsync_dir_files(tmp)
        outdir.check_replaceable(target, kind)
        replace_dir(tmp, target)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise AdvvizError(f"{failure}: {e.strerror or e}; the previous {what} (if any) is intact") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    """Replace one JSON file of a checkpoint atomically (temp file + rename)."""
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    _write_json(tmp, obj)
    os.replace(tmp, path)


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


def _check_shapes(directory: Path, config: dict, tokenizer) -> None:
    """Compare config.json's architecture with the tensor shapes in the safetensors header, on the
    meta device (nothing allocated), before building the real model."""
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in model_from_config(config["model"], tokenizer).state_dict().items()}
        with safe_open(str(directory / "model.safetensors"), "pt") as f:
            found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys() if not k.startswith("extra.")}
    except (SafetensorError, OSError) as e:
        raise AdvvizError(f"{directory}/model.safetensors is unreadable or truncated ({e})") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise AdvvizError(f"{directory}/config.json does not describe a model advviz can build ({e})") from None
    missing = [k for k in expected if k not in found and not k.endswith("decoder.weight")]
    wrong = [k for k in found if expected.get(k) != found[k]]
    if missing or wrong:
        detail = ", ".join(f"{k} {found.get(k)} vs {expected.get(k)}" for k in (wrong or missing)[:2])
        raise AdvvizError(f"{directory}/model.safetensors does not match config.json ({detail})")


def _check_positions(directory: Path, config: dict, tokenizer) -> None:
    """A transformer reads at most its position embeddings' worth of tokens: a tokenizer
    max_length beyond that would fail at the first long text, so it is refused here."""
    if not isinstance(config.get("model"), dict) or config["model"].get("family") != "hf":
        return
    positions = (config["model"].get("encoder_config") or {}).get("max_position_embeddings")
    if isinstance(positions, int) and isinstance(tokenizer.max_length, int) and tokenizer.max_length > positions:
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
        raise AdvvizError(f"{directory} was written {f'by advviz {by} ' if by else ''}in checkpoint format {fv}; "
                          f"this advviz {__version__} reads format {FORMAT_VERSION} and older: upgrade advviz "
                          f"(pip install --upgrade advviz)")


def load_checkpoint(directory: str | os.PathLike, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild a model from a checkpoint directory (safetensors + JSON only; see verify_checkpoint_dir)."""
    directory = Path(directory)
    if not (directory / "config.json").is_file() or not (directory / "model.safetensors").is_file():
        raise AdvvizError(f"{directory} is not an advviz checkpoint (needs config.json and model.safetensors)")
    verify_checkpoint_dir(directory)
    config = _read_json(directory / "config.json")
    metrics = _read_json(directory / "metrics.json", dict) if (directory / "metrics.json").is_file() else {}
    if not isinstance(config, dict):
        raise AdvvizError(f"{directory}/config.json does not describe a model advviz can build (not an object)")
    check_format(directory, config)
    # only these sections drive loading; "train" records e.g. the data directory, informational
    _check_no_paths({"model": config.get("model"), "tokenizer": config.get("tokenizer")}, f"{directory}/config.json")
    try:
        tokenizer = load_tokenizer(directory, config["tokenizer"])
    except (KeyError, TypeError, ValueError, OSError) as e:
        raise AdvvizError(f"{directory}: the tokenizer files do not load ({type(e).__name__}: {e})") from None
    _check_positions(directory, config, tokenizer)
    _check_shapes(directory, config, tokenizer)
    try:
        model = model_from_config(config["model"], tokenizer)
        tensors = load_file(str(directory / "model.safetensors"))
    except (KeyError, TypeError, ValueError) as e:
        raise AdvvizError(f"{directory}/config.json does not describe a model advviz can build ({e})") from None
    except (SafetensorError, OSError) as e:
        raise AdvvizError(f"{directory}/model.safetensors is unreadable or truncated ({e})") from None
    if len(tokenizer.vocab) > model.embedding_matrix().shape[0]:
        raise AdvvizError(f"{directory}: the tokenizer has {len(tokenizer.vocab)} entries but the embedding "
                          f"matrix only {model.embedding_matrix().shape[0]} rows")
    own = {k: v for k, v in tensors.items() if not k.startswith("extra.")}
    model.load_state_dict(own, strict=False)  # keys and shapes were checked above
    extra_state: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
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
