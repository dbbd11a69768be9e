"""advviz: train text classifiers adversarially in embedding space and see what the adversary does."""

from .api import Model, load
from .version import __version__

__all__ = ["Model", "load", "__version__"]
