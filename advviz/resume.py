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

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .checkpoint import atomic_dir, state_tensors
from .errors import AdvvizError


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
    with atomic_dir(target, f"could not save the resume state under {target.parent}", "state") as tmp:
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
        (tmp / "state.json").write_text(json.dumps(state, default=str), encoding="utf-8")


def load_state(out_dir: Path) -> tuple[dict, dict[str, torch.Tensor]] | None:
    """(state.json, tensors) of the last complete save, or None when there is none."""
    d = resume_dir(out_dir)
    if not (d / "state.json").is_file() or not (d / "tensors.safetensors").is_file():
        return None
    try:
        state = json.loads((d / "state.json").read_text(encoding="utf-8"))
        tensors = load_file(str(d / "tensors.safetensors"))
    except (OSError, json.JSONDecodeError, SafetensorError) as e:
        raise AdvvizError(f"the resume state in {d} is unreadable ({type(e).__name__}); "
                          f"delete it to start over") from None
    return state, tensors


def restore(state: dict, tensors: dict[str, torch.Tensor], *, model, extras: dict, optimizer, scheduler,
            method) -> dict:
    """Load everything back; returns the counters."""
    def sub(prefix):
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    model.load_state_dict(sub("model."), strict=False)
    for name, mod in extras.items():
        mod.load_state_dict(sub(f"extra.{name}."), strict=False)
    optimizer.load_state_dict(_optimizer_join(tensors, state["optimizer"]))
    scheduler.load_state_dict(state["scheduler"])
    method.load_state_dict(sub("method."))
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return state["counters"]


def clear_state(out_dir: Path) -> None:
    shutil.rmtree(resume_dir(out_dir), ignore_errors=True)
