"""NNX layer kinds: one module per flax layer class, each registering the ``Kind`` that holds everything
kind-specific (``base`` has the protocol and the registry; ``jaxsvd.nnx.conversion``, ``svdifylib``, ``calibration``
and ``jaxsvd.checkpoint.nnx`` resolve it):

  linear          nnx.Linear          → LinearSVD           n × c
  linear_general  nnx.LinearGeneral   → LinearGeneralSVD    ∏out × ∏in
  conv            nnx.Conv (1-D/2-D)  → ConvSVD             channel n × ∏k·c, or spatial kw·n × kh·c (2-D)
  embed           nnx.Embed           → EmbedSVD            features × vocab
  einsum          nnx.Einsum          → EinsumSVD           (letters only in out) × (letters only in lhs), stacked
  conv_transpose  nnx.ConvTranspose   → ConvTransposeSVD    n × ∏k·c (1-D/2-D; the SVD layer lives in that module)

A new kind is one module: a ``Kind`` subclass (its ``layer``, ``svd_layer``, ``view``, ``to_svd``; optionally
``reasons``, ``moments``, ``macs``, ``probe``, ``decomposition``) and ``register(MyKind())`` — imported before
``svdify`` runs (docs/own_model.md, "Adding a layer kind").
"""

from jaxsvd.nnx.kinds import base as base
from jaxsvd.nnx.kinds import conv as conv
from jaxsvd.nnx.kinds import conv_transpose as conv_transpose
from jaxsvd.nnx.kinds import einsum as einsum
from jaxsvd.nnx.kinds import embed as embed
from jaxsvd.nnx.kinds import linear as linear
from jaxsvd.nnx.kinds import linear_general as linear_general
from jaxsvd.nnx.kinds.base import Kind as Kind
from jaxsvd.nnx.kinds.base import layer_args as layer_args
from jaxsvd.nnx.kinds.base import layer_classes as layer_classes
from jaxsvd.nnx.kinds.base import register as register
from jaxsvd.nnx.kinds.base import registered as registered
from jaxsvd.nnx.kinds.base import resolve as resolve
from jaxsvd.nnx.kinds.base import svd_layer_classes as svd_layer_classes
from jaxsvd.nnx.kinds.conv_transpose import ConvTransposeSVD as ConvTransposeSVD

__all__ = ["Kind", "ConvTransposeSVD", "layer_args", "layer_classes", "register", "registered", "resolve",
           "svd_layer_classes", "base", "conv", "conv_transpose", "einsum", "embed", "linear", "linear_general"]
