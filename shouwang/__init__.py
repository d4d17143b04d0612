"""Shouwang (守望): the shared kernel — domain model, metric catalogue, bus, store, CLI."""

__all__ = ["__version__"]

__version__ = "0.1.0"
