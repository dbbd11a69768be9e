"""The advviz version (its own module, so any part of the package can read it without importing the package)."""

__version__ = "0.1.0"
