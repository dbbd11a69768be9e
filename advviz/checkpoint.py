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

import json
import os
import platform
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import AdvvizError
from .models import Classifier, model_from_config
from .tokenizers import load_tokenizer

FORMAT_VERSION = 1
# Files a checkpoint may contain; anything else (a *.bin, *.pt, *.pkl) is never read.
ALLOWED_FILES = {"config.json", "model.safetensors", "metrics.json", "train_log.jsonl", "vocab.txt",
                 "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "eval.json"}


def versions() -> dict[str, str]:
    import numpy
    import transformers

    from . import __version__

    return {"advviz": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def _state_dict(model: Classifier, extras: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
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


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")


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
        tmp = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
    except OSError as e:
        raise AdvvizError(f"cannot write checkpoint under {directory.parent}: {e.strerror}") from None
    try:
        full_config = {"format_version": FORMAT_VERSION, **config, "model": model.config_dict(),
                       "tokenizer": model.tokenizer.meta(), "extras": sorted(extras),
                       "versions": versions()}
        _write_json(tmp / "config.json", full_config)
        save_file(_state_dict(model, extras), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        model.tokenizer.save(tmp)
        _write_json(tmp / "metrics.json", metrics)
        with open(tmp / "train_log.jsonl", "w", encoding="utf-8") as f:
            for line in log_lines or []:
                f.write(json.dumps(line) + "\n")
        for p in tmp.iterdir():  # make the bytes durable before the rename makes them visible
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        old = None
        if directory.exists():
            old = directory.parent / f".{directory.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(directory, old)
        os.rename(tmp, directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise AdvvizError(f"could not save checkpoint to {directory}: {e.strerror or e}; "
                          f"the previous checkpoint (if any) is intact") from None
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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AdvvizError(f"{path}: not a readable JSON file ({type(e).__name__})") from None


def load_checkpoint(directory: str | os.PathLike, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild a model from a checkpoint directory (safetensors + JSON only)."""
    directory = Path(directory)
    if not (directory / "config.json").is_file() or not (directory / "model.safetensors").is_file():
        raise AdvvizError(f"{directory} is not an advviz checkpoint (needs config.json and model.safetensors)")
    config = _read_json(directory / "config.json")
    metrics = _read_json(directory / "metrics.json") if (directory / "metrics.json").is_file() else {}
    try:
        tokenizer = load_tokenizer(directory, config["tokenizer"])
        model = model_from_config(config["model"], tokenizer)
    except (KeyError, TypeError, ValueError) as e:
        raise AdvvizError(f"{directory}/config.json does not describe a model advviz can build ({e})") from None
    try:
        tensors = load_file(str(directory / "model.safetensors"))
    except (SafetensorError, OSError) as e:
        raise AdvvizError(f"{directory}/model.safetensors is unreadable or truncated ({e})") from None
    own = {k: v for k, v in tensors.items() if not k.startswith("extra.")}
    missing, unexpected = model.load_state_dict(own, strict=False)
    tied = {k for k in missing if k.endswith("decoder.weight")}  # tied weights stored once
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise AdvvizError(f"{directory}/model.safetensors does not match config.json "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    extra_state: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("extra."):
            _, name, rest = k.split(".", 2)
            extra_state.setdefault(name, {})[rest] = v
    model.to(device).eval()
    return Checkpoint(directory, model, config, metrics, extra_state)
