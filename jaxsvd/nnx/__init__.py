"""SVD form for Flax NNX: the layers, and in-place ``svdify`` / ``prune`` / ``regularization`` over ``nnx.State``.

  layers      ``LinearSVD``, ``LinearGeneralSVD``, ``ConvSVD``, ``EmbedSVD`` (sharding metadata carried to U, s, V)
  view_layers ``EinsumSVD`` (``nnx.Einsum``) and ``factor_kernel`` (a subclass with its kernel rebuilt from U, s, V)
  params      the factors' Params: placed on the mesh, the dense kernel's sharding carried to U, s, V
  surface     converted layers keep the replaced layer's surface: ``kernel``/``embedding`` read as U·diag(s)·Vᵀ
  kinds       the layer-kind registry: one module per layer class (view, SVD layer, statistics, MACs, checkpoint
              decomposition); ``kinds.conv_transpose`` holds ``ConvTransposeSVD`` (``nnx.ConvTranspose``)
  conversion  which layers convert, as what, and why the others stay dense (the subclass rule)
  svdifylib   ``svdify`` (graph surgery), ``to_svd``, ``ranks``, ``prune``, ``regularization``, ``svdified``
  calibration data-aware ``svdify`` (whitened | activation factors from calibration batches), ``compress``

NNX checkpoints are ``jaxsvd.checkpoint.nnx``; ``jaxsvd.checkpoint.restore`` reads them too.
"""

from jaxsvd.nnx import calibration as calibration
from jaxsvd.nnx import conversion as conversion
from jaxsvd.nnx import kinds as kinds
from jaxsvd.nnx import layers as layers
from jaxsvd.nnx import params as params
from jaxsvd.nnx import surface as surface
from jaxsvd.nnx import svdifylib as svdifylib
from jaxsvd.nnx import view_layers as view_layers
from jaxsvd.nnx.kinds import ConvTransposeSVD as ConvTransposeSVD
from jaxsvd.nnx.layers import ConvSVD as ConvSVD
from jaxsvd.nnx.layers import EmbedSVD as EmbedSVD
from jaxsvd.nnx.layers import LinearGeneralSVD as LinearGeneralSVD
from jaxsvd.nnx.layers import LinearSVD as LinearSVD
from jaxsvd.nnx.svdifylib import ConversionReport as ConversionReport
from jaxsvd.nnx.svdifylib import prune as prune
from jaxsvd.nnx.svdifylib import ranks as ranks
from jaxsvd.nnx.svdifylib import regularization as regularization
from jaxsvd.nnx.svdifylib import svdified as svdified
from jaxsvd.nnx.svdifylib import svdify as svdify
from jaxsvd.nnx.svdifylib import to_svd as to_svd
from jaxsvd.nnx.view_layers import EinsumSVD as EinsumSVD

__all__ = ["ConversionReport", "ConvSVD", "ConvTransposeSVD", "EinsumSVD", "EmbedSVD", "LinearGeneralSVD", "LinearSVD",
           "prune", "ranks", "regularization", "svdified", "svdify", "to_svd", "calibration", "conversion", "kinds",
           "layers", "params", "surface", "svdifylib", "view_layers"]
