"""advviz: train text classifiers adversarially in embedding space and see what the adversary does."""

__version__ = "0.1.0"

from .api import Model, load  # noqa: E402

__all__ = ["Model", "load", "__version__"]
