"""Models the experiments write as a flax user writes them (not in the library's zoo), trained through the user-model
path: ``jaxsvd.linen.svdify`` converts them and the architecture record (``user``) restores them.

  byte_lm   a decoder-only byte-level transformer (``experiments.tasks.language_model``)
"""

__all__: list[str] = []
