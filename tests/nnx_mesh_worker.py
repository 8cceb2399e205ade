"""A worker for tests/checkpoint/nnx_mesh_test.py (not a test file), run with 4 forced CPU devices:

  python -m tests.nnx_mesh_worker DIR AXIS_TYPE
An svdified NNX MLP whose kernels are partitioned over a ('data', 'model') mesh is saved under a 1×4 mesh and restored
straight onto a 1×4 and a 2×2 mesh (AXIS_TYPE 'auto' or 'explicit'); prints one JSON line: each restore's max output
difference and the specs and device counts of the restored factors.
"""

import json
import sys

import jax
import jax.numpy as jnp
from flax import nnx

from jaxsvd.checkpoint import nnx as checkpoint_nnx
from jaxsvd.nnx import svdifylib


class MLP(nnx.Module):
  """Megatron-style: the first kernel sharded by its outputs, the second by its inputs (with Explicit axes a
  contraction over a sharded axis needs an output sharding, so there the second kernel is replicated)."""

  def __init__(self, rngs):
    init = nnx.initializers.lecun_normal()
    explicit = jax.sharding.get_abstract_mesh().are_all_axes_explicit
    self.up = nnx.Linear(8, 16, kernel_init=nnx.with_partitioning(init, (None, "model")), rngs=rngs)
    self.down = nnx.Linear(16, 4, kernel_init=nnx.with_partitioning(init, (None if explicit else "model", None)),
                           rngs=rngs)

  def __call__(self, x):
    return self.down(nnx.relu(self.up(x)))


def main(directory: str, axis_type: str) -> None:
  kind = {"auto": jax.sharding.AxisType.Auto, "explicit": jax.sharding.AxisType.Explicit}[axis_type]
  x = jnp.arange(16.0).reshape(2, 8) / 16
  with jax.set_mesh(jax.make_mesh((1, 4), ("data", "model"), axis_types=(kind, kind))):
    model = MLP(nnx.Rngs(0))
    svdifylib.svdify(model, {"up": 6})
    expected = jax.device_get(model(x))
    checkpoint_nnx.save(directory, model)
  out = {}
  for shape in ((1, 4), (2, 2)):
    with jax.set_mesh(jax.make_mesh(shape, ("data", "model"), axis_types=(kind, kind))):
      restored = checkpoint_nnx.restore(directory, lambda: MLP(nnx.Rngs(1))).model
      diff = float(jnp.max(jnp.abs(restored(x) - expected)))
      factors = {f"{layer}.{name}": [list(map(str, getattr(restored, layer).__dict__[name][...].sharding.spec)),
                                     len(getattr(restored, layer).__dict__[name][...].sharding.device_set)]
                 for layer in ("up", "down") for name in ("U", "s", "V")}
    out["x".join(map(str, shape))] = {"diff": diff, "factors": factors}
  print(json.dumps(out))


if __name__ == "__main__":
  main(*sys.argv[1:])
