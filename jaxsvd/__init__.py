"""jaxsvd: SVD-form training and online low-rank pruning in JAX (Yang et al., arXiv 2004.09031)."""

__version__ = "0.1.0"
