"""SVD form for flax linen: the layers, and ``svdify`` for any linen model.

  layers         ``DenseSVD``, ``ConvSVD``: W = U·diag(s)·Vᵀ, channel | spatial, modes reconstruct | factored | auto
  svdifylib      ``svdify`` (a model's linear layers in SVD form, by method interception), ``SVDModel``
  decomposition  ``decompose``: a trained dense model's variables as rank-r factors (plain | activation | whitened)
  calibration    ``collect``: each converted layer's input statistics over calibration batches
  compress       ``compress``: a trained dense linen model to a MACs / params budget by data-aware SVD
  kinds          the layer-kind registry: one module per linen layer class (kernel name, matrix view, native SVD
                 layer, statistics, MACs, deploy geometry)
  conversion     how a layer runs in SVD form (the kernel way, the native way, the subclass rule)
  flops          MACs of a linen model's layers, dense and in SVD form
  budget         the ``pruning.budget.MacsCounter`` of a linen model (two ``flops`` traces); a zoo record's
  modes          ``in_mode``: a bound ``.apply`` re-targeted to another execution mode

Importing it registers its plug-ins with ``jaxsvd.core.registry`` ('user/linen', 'macs/zoo', 'mode/linen'), which
the framework-neutral ``pruning`` and ``training`` look up by name. It imports no ``jaxsvd.nnx`` and no ``flax.nnx``.
"""

from jaxsvd.linen import budget as budget
from jaxsvd.linen import calibration as calibration
from jaxsvd.linen import compress as compress
from jaxsvd.linen import conversion as conversion
from jaxsvd.linen import decomposition as decomposition
from jaxsvd.linen import flops as flops
from jaxsvd.linen import kinds as kinds
from jaxsvd.linen import layers as layers
from jaxsvd.linen import modes as modes
from jaxsvd.linen import svdifylib as svdifylib
from jaxsvd.linen.decomposition import decompose as decompose
from jaxsvd.linen.layers import ConvSVD as ConvSVD
from jaxsvd.linen.layers import DenseSVD as DenseSVD
from jaxsvd.linen.modes import in_mode as in_mode
from jaxsvd.linen.svdifylib import ConversionReport as ConversionReport
from jaxsvd.linen.svdifylib import SVDModel as SVDModel
from jaxsvd.linen.svdifylib import svdify as svdify

__all__ = ["ConversionReport", "ConvSVD", "DenseSVD", "SVDModel", "decompose", "in_mode", "svdify",
           "budget", "calibration", "compress", "conversion", "decomposition", "flops", "kinds", "layers", "modes", "svdifylib"]
