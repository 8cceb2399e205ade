"""The framework-free core: the SVD math, matrix views, structure read back from params, the architecture record.

Nothing here imports ``flax.linen``, ``flax.nnx``, the zoo or any other jaxsvd subpackage
(``tests/project/layering_test.py``).

  calibration   data-aware factors: input statistics, plain | activation | whitened truncation, output energy
  svd           W = U·diag(s)·Vᵀ: inits (svd_of_he, official), ``sigma``, dense/conv applies in 3 modes
  factors       a kernel's matrix views (channel | spatial), the two executions, their MACs
  matrix_view   matrix views of arbitrary kernels (DenseGeneral, Einsum, Embed, stacked layers)
  structure     ranks, svd_layers, norm_layers: the architecture read back from params
  regularizers  orthogonality and sparsity (Hoyer, Hoyer-Square, L1) of (U, s, V)
  spec          ``SVDSpec``: how a model uses SVD layers
  record        ``Architecture``: the architecture record stored in checkpoints
  contract      ``InputContract``: raw uint8 images → model inputs (scale, mean, std), class names
  registry      functions resolved by name (the zoo, user models, the zoo's MACs, SVD modes), so the core,
                ``training`` and ``pruning`` import no framework
  tree          '/'-joined pytree paths
  validate      one-line checks of config values and datasets
"""

from jaxsvd.core import calibration as calibration
from jaxsvd.core import contract as contract
from jaxsvd.core import factors as factors
from jaxsvd.core import matrix_view as matrix_view
from jaxsvd.core import record as record
from jaxsvd.core import registry as registry
from jaxsvd.core import regularizers as regularizers
from jaxsvd.core import spec as spec
from jaxsvd.core import structure as structure
from jaxsvd.core import svd as svd
from jaxsvd.core import tree as tree
from jaxsvd.core import validate as validate
from jaxsvd.core.record import Architecture as Architecture
from jaxsvd.core.record import FormatError as FormatError
from jaxsvd.core.spec import SVDSpec as SVDSpec
from jaxsvd.core.structure import norm_layers as norm_layers
from jaxsvd.core.structure import ranks as ranks
from jaxsvd.core.structure import svd_layers as svd_layers

__all__ = ["Architecture", "FormatError", "SVDSpec", "norm_layers", "ranks", "svd_layers",
           "calibration", "contract", "factors", "matrix_view", "record", "registry", "regularizers", "spec",
           "structure", "svd", "tree", "validate"]
