"""The version of jaxsvd (one place: pyproject.toml reads it, checkpoints record it)."""

__version__ = "0.3.1"

__all__ = ["__version__"]
