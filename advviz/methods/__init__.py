"""The table of training methods / adversaries: name -> class (no strings evaluated; `METHODS`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config import method_preset
from ..errors import AdvvizError
from .base import Method, MethodConfig, StepOutput, unwrap
from .baseline import Baseline
from .carl import CARL
from .freelb import FreeLB
from .rar import CARLRAR, RAR
from .advt import AdvT
from .ascc import ASCC
from .dne import DNE
from .fgsm import FGSM
from .iadvt import IAdvT
from .pgd import PGD
from .spgd import SPGD
from .uae import UAE
from .vat import VAT

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in [Baseline, FreeLB, AdvT, FGSM, IAdvT, SPGD, PGD, CARL, RAR, CARLRAR,
                                                               VAT, UAE, ASCC, DNE]}


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise AdvvizError(f"unknown method '{name}'; known: {', '.join(METHODS)}")
    return METHODS[name]


def resolve_method(name: str, arch: str | None, given: dict[str, Any] | None = None,
                   preset: str = "family") -> dict[str, Any]:
    """Every setting of method ``name`` on architecture ``arch``: the field's default, then the
    family preset (``preset``), then the values the user ``given`` (``None`` = not given). The one
    place this rule lives: ``advviz train``, the app's training form and background jobs, the
    Trainer, every attack (``analysis.attacks.build_attack``), the flags' help and the app's
    widgets call it, so a default shown is the default used. A name that is not a setting of the
    method is one line, never dropped."""
    cls = get_method(name).Config
    given = {k: v for k, v in (given or {}).items() if v is not None}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(k for k in given if k not in names)
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        raise AdvvizError(f"{name}: {flags} is not a setting of {cls.__name__}")
    return {**cls().to_dict(), **method_preset(name, arch, preset), **given}


def attacks() -> dict[str, type[Method]]:
    return {n: c for n, c in METHODS.items() if c.is_attack}


def build_method(name: str, overrides: dict | None = None) -> Method:
    """A method from its name and flag values; out-of-range values give one clear line."""
    cls = get_method(name)
    try:
        config = cls.Config.from_overrides(overrides or {})
    except (ValueError, TypeError) as e:
        raise AdvvizError(f"{name}: {e}") from None
    return cls(config)


__all__ = ["METHODS", "Method", "MethodConfig", "StepOutput", "attacks", "build_method", "get_method",
           "resolve_method", "unwrap"]
