"""Resumable training state: everything ``advviz train --resume`` needs to continue a killed run
and end with the same numbers as an uninterrupted one.

Stored in a hidden sibling of the checkpoint, ``.<name>.resume/`` (so the atomic swap of the best
checkpoint never touches it), and itself written atomically (temp dir + rename):

    state.json            counters, best metrics, log, scheduler and optimizer hyperparameters,
                          the run's config (a resume with different settings is refused)
    tensors.safetensors   model.* / extra.* weights, opt.<i>.<key> optimizer moments,
                          rng.torch (global CPU RNG), rng.cuda, method.* (memory banks,
                          neighbour tables, the method's generator)

Data order needs no state: each epoch's permutation comes from a generator seeded with
(seed, epoch), and a resumed epoch skips the batches already done.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import AdvvizError
from . import outdir
from .checkpoint import atomic_dir, state_shapes, state_tensors
from .jsonio import dumps, read_json


def resume_dir(out_dir: Path) -> Path:
    return out_dir.parent / f".{out_dir.name}.resume"


def _optimizer_split(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{idx}.{k}"] = v.detach().cpu().contiguous().clone()
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_join(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, idx, k = key.split(".", 2)
            state.setdefault(int(idx), {})[k] = v
    for key, v in meta["scalars"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def save_state(out_dir: Path, *, model, extras: dict, optimizer, scheduler, method, counters: dict,
               run_fingerprint: dict) -> None:
    """Write the resume state atomically; a crash mid-write leaves the previous state intact."""
    target = resume_dir(out_dir)
    with atomic_dir(target, f"could not save the resume state under {target.parent}", "state", outdir.RESUME) as tmp:
        tensors = {(k if k.startswith("extra.") else f"model.{k}"): v
                   for k, v in state_tensors(model, extras).items()}
        opt_tensors, opt_meta = _optimizer_split(optimizer)
        tensors.update(opt_tensors)
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            tensors["rng.cuda"] = torch.cuda.get_rng_state()
        for k, v in method.state_dict().items():
            tensors[f"method.{k}"] = v.detach().cpu().contiguous().clone()
        save_file(tensors, str(tmp / "tensors.safetensors"))
        state = {"counters": counters, "optimizer": opt_meta, "scheduler": scheduler.state_dict(),
                 "run": run_fingerprint}
        (tmp / "state.json").write_text(dumps(state), encoding="utf-8")


def has_state(out_dir: Path) -> bool:
    """Something (complete or not) is saved at the resume path of ``out_dir``."""
    return os.path.lexists(resume_dir(out_dir))


def _malformed(d: Path, what: str) -> AdvvizError:
    return AdvvizError(f"the resume state in {d} cannot be restored completely ({what}); "
                       f"start the run again with --overwrite")


def _check_state(d: Path, state) -> None:
    """state.json has every part :func:`restore` and the Trainer need, with the right types."""
    if not isinstance(state, dict):
        raise _malformed(d, "state.json is not a JSON object")
    for key, typ in (("counters", dict), ("optimizer", dict), ("scheduler", dict), ("run", dict)):
        if not isinstance(state.get(key), typ):
            raise _malformed(d, f"state.json has no '{key}' object")
    c = state["counters"]
    for key in ("step", "epoch", "batch_in_epoch", "seen"):
        if not isinstance(c.get(key), int) or isinstance(c.get(key), bool) or c[key] < 0:
            raise _malformed(d, f"counter '{key}' is missing or not a non-negative integer")
    if not isinstance(c.get("train_time"), (int, float)) or not isinstance(c.get("best"), dict) \
            or not isinstance(c["best"].get("dev_accuracy"), (int, float)):
        raise _malformed(d, "counters 'train_time' / 'best' are missing")
    if not isinstance(c.get("log", []), list):
        raise _malformed(d, "the saved log is not a list")
    opt = state["optimizer"]
    if not isinstance(opt.get("param_groups"), list) or not isinstance(opt.get("scalars"), dict):
        raise _malformed(d, "the optimizer state is incomplete")
    run = state["run"]
    if not isinstance(run.get("train"), dict) or "method" not in run:
        raise _malformed(d, "the run's settings are missing")


def load_state(out_dir: Path) -> tuple[dict, dict[str, torch.Tensor]] | None:
    """(state.json, tensors) of the last complete save, or None when nothing was saved. A resume
    directory that exists but is incomplete or malformed is one error line, never a fresh start."""
    d = resume_dir(out_dir)
    if not has_state(out_dir):
        return None
    for name in ("state.json", "tensors.safetensors"):
        if not (d / name).is_file():
            raise _malformed(d, f"{name} is missing")
    try:
        state = read_json(d / "state.json")
    except AdvvizError as e:
        raise _malformed(d, str(e).replace(str(d / "state.json"), "state.json")) from None
    _check_state(d, state)
    try:
        tensors = load_file(str(d / "tensors.safetensors"))
    except (OSError, SafetensorError) as e:
        raise _malformed(d, f"tensors.safetensors is unreadable: {type(e).__name__}") from None
    return state, tensors


def _expect(d: Path, tensors: dict[str, torch.Tensor], expected: dict[str, tuple], what: str) -> None:
    missing = [k for k in expected if k not in tensors]
    if missing:
        raise _malformed(d, f"{what} tensors are missing: {', '.join(missing[:3])}{', …' if len(missing) > 3 else ''}")
    wrong = [k for k, shape in expected.items() if tuple(tensors[k].shape) != tuple(shape)]
    if wrong:
        k = wrong[0]
        raise _malformed(d, f"{k} has shape {tuple(tensors[k].shape)}, the model needs {tuple(expected[k])}")


def restore(state: dict, tensors: dict[str, torch.Tensor], *, model, extras: dict, optimizer, scheduler,
            method, directory: Path | None = None) -> dict:
    """Load everything back; returns the counters. Every tensor the run saves must be there with
    its shape (weights, optimizer moments once a step was taken, RNG, the method's state):
    anything less is refused rather than continued from fresh values."""
    d = directory or Path("(resume state)")

    def sub(prefix):
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    saved_keys = {(k if k.startswith("extra.") else f"model.{k}"): shape
                  for k, shape in state_shapes(model, extras).items()}
    _expect(d, tensors, saved_keys, "model")
    _expect(d, tensors, {f"method.{k}": tuple(v.shape) for k, v in method.state_dict().items()}, "method")
    if "rng.torch" not in tensors:
        raise _malformed(d, "the random generator state rng.torch is missing")
    if state["counters"]["step"] > 0 and not any(k.startswith("opt.") for k in tensors):
        raise _malformed(d, "the optimizer moments are missing")
    try:
        model.load_state_dict(sub("model."), strict=False)
        for name, mod in extras.items():
            mod.load_state_dict(sub(f"extra.{name}."), strict=False)
        joined = _optimizer_join(tensors, state["optimizer"])
        params = [p for g in optimizer.param_groups for p in g["params"]]
        for idx, st in joined["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v) and v.dim() > 0 and (idx >= len(params) or v.shape != params[idx].shape):
                    raise _malformed(d, f"optimizer state opt.{idx}.{k} does not fit the model")
        optimizer.load_state_dict(joined)
        scheduler.load_state_dict(state["scheduler"])
        method.load_state_dict(sub("method."))
        torch.set_rng_state(tensors["rng.torch"])
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as e:
        raise _malformed(d, f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}") from None
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return state["counters"]


def clear_state(out_dir: Path) -> None:
    """Remove the resume state of a finished run (only if it is advviz's own resume directory)."""
    try:
        outdir.remove_owned(resume_dir(out_dir), outdir.RESUME)
    except (AdvvizError, OSError):
        pass  # something else is there now: leave it
