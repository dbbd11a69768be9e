"""The one place an attack is built, for every analysis (inspect, robustness, projection,
reconstructions, perplexity, reports) and the app.

    method = build_attack("spgd", {"k": 5}, core)     # core: the Classifier attacked

The attack's values are its config's defaults, then the model family's preset
(``config.FAMILY_PRESETS``: the papers' ε scaled for GloVe-50d LSTMs, BiGRUs, transformers), then
``overrides`` (what the user set). ``--preset paper`` reaches here as explicit overrides
(``paper_overrides``). A training method that is not an attack, an unknown name, a value out of
range or a setting the attack does not have is one clear line (``AdvvizError``).
"""

from __future__ import annotations

from ..config import method_preset
from ..errors import AdvvizError
from ..methods import attacks, build_method, get_method
from ..methods.adversarial import NeighborMixin
from ..methods.neighbors import NeighborIndex, excluded_ids, index_for

DEFAULT_K = 15  # neighbours of the cosine index when the attack has none of its own


def build_attack(attack: str, overrides: dict | None = None, core=None):
    """The attack ``attack`` for the Classifier ``core`` (its family's preset), with ``overrides``."""
    cls = get_method(attack)
    if not cls.is_attack:
        raise AdvvizError(f"'{attack}' is a training method, not an attack; attacks: {', '.join(attacks())}")
    arch = getattr(core, "arch", None)
    values = {**method_preset(attack, arch), **{k: v for k, v in (overrides or {}).items() if v is not None}}
    return build_method(attack, values)


def paper_overrides(attack: str, overrides: dict | None = None) -> dict:
    """``overrides`` plus the papers' own value of every field a family preset would change."""
    defaults = get_method(attack).Config()
    touched = {k for fam in ("lstm", "bigru", "hf") for k in method_preset(attack, fam)}
    return {**{k: getattr(defaults, k) for k in touched}, **(overrides or {})}


def attach_index(method, core, cache_dir=None) -> NeighborIndex:
    """The cosine neighbour index the method (if it uses one) and the discretization share. An attack
    without neighbours of its own (pgd, fgsm, ...) needs the index only to discretize, so its k is
    capped by the vocabulary instead of refusing a small one."""
    if isinstance(method, NeighborMixin):
        k = int(method.config.k)
    else:
        words = core.embedding_matrix().shape[0] - len(excluded_ids(core.tokenizer))
        k = max(1, min(DEFAULT_K, words))
    index = index_for(core, k, "cosine", cache_dir)
    if isinstance(method, NeighborMixin):
        method.set_index(index)
    return index
