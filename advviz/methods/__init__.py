"""Registry of training methods / adversaries: name -> class (no strings evaluated)."""

from __future__ import annotations

from ..errors import AdvvizError
from .base import Method, MethodConfig, StepOutput, unwrap
from .baseline import Baseline
from .carl import CARL
from .freelb import FreeLB
from .rar import CARLRAR, RAR
from .advt import AdvT
from .fgsm import FGSM
from .iadvt import IAdvT
from .pgd import PGD
from .spgd import SPGD
from .uae import UAE
from .vat import VAT

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in [Baseline, FreeLB, AdvT, FGSM, IAdvT, SPGD, PGD, CARL, RAR, CARLRAR,
                                                               VAT, UAE]}


def register(cls: type[Method]) -> type[Method]:
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise AdvvizError(f"unknown method '{name}'; known: {', '.join(METHODS)}")
    return METHODS[name]


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
           "register", "unwrap"]
