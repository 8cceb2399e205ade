"""The version of jaxsvd (one place: pyproject.toml reads it, checkpoints record it)."""

__version__ = "0.3.0"

__all__ = ["__version__"]
