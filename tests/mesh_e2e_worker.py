"""A worker for tests/training/mesh_e2e_test.py (not a test file): SVD training of sharded transformers, end to end.

  python -m tests.mesh_e2e_worker MODEL MESH[,MESH...] DIR [COORDINATOR NUM_PROCESSES PROCESS_ID]

MODEL 'lm' (linen ``DecoderLM`` on tokens of the Python standard library's own source) or 'vit' (NNX ``ViT`` on
Fashion-MNIST crops, or seeded noise when the Debian package is absent); MESH 'DxM' = a (data, model) mesh with Auto
axes and ``mesh_models.FSDP_RULES``, or 'none' (one device, no mesh: the reference). The run: svdify → 3 regularized
Adam steps (linen: λo·orthogonality + λs·Hoyer in the loss; NNX: ``jaxsvd.training.add_svd_regularization`` first
in the optax chain) → energy prune (optimizer state sliced, the step recompiled once) → 2 more steps → checkpoint →
restore straight onto a (1, devices) mesh (``none``: no mesh); the LM also decomposes its dense twin's sharded
params. Prints one JSON line (process 0), {MESH: result} for each mesh in turn (checkpoints in DIR/MESH), the result
being: the loss per step, the ranks after the prune, the restored model's max output difference, and the partition
specs and device counts of the factors before and after the prune, after the restore and (LM) after decompose.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys

import flax.linen as nn
import jax
import numpy as np
import optax
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import jaxsvd
from jaxsvd import nnx as jnnx
from jaxsvd.checkpoint import nnx as checkpoint_nnx
from jaxsvd.core import regularizers
from jaxsvd.core.tree import trailing_dict_path
from jaxsvd.data import datasets
from jaxsvd.pruning.opt_state import opt_state_after
from jaxsvd.training import add_svd_regularization
from tests import mesh_models

LAMBDA_O, LAMBDA_S = 1e-2, 1e-3
STRATEGY = jaxsvd.Strategy("energy", energy=0.1)
BATCH, LENGTH = 8, 16


def make_mesh(spec: str):
  """The (data, model) mesh 'DxM' with Auto axes, or None for 'none'."""
  if spec == "none":
    return None
  shape = tuple(int(n) for n in spec.split("x"))
  return jax.make_mesh(shape, ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)


def token_batches(steps: int) -> list[np.ndarray]:
  """(BATCH, LENGTH + 1) windows of byte tokens (< 128) of ``json/decoder.py``'s source, one per step."""
  text = open(json.decoder.__file__, "rb").read()
  tokens = np.minimum(np.frombuffer(text, np.uint8), 127).astype(np.int32)
  starts = np.arange(steps * BATCH) * 97 % (len(tokens) - LENGTH - 1)
  return [np.stack([tokens[s:s + LENGTH + 1] for s in starts[i * BATCH:(i + 1) * BATCH]]) for i in range(steps)]


def image_batches(steps: int) -> list[tuple[np.ndarray, np.ndarray]]:
  """(images (BATCH, 16, 16, 1) in [0, 1], labels) per step: centre crops of Fashion-MNIST training images."""
  path = datasets.FASHION_MNIST_DIRS[0]
  if os.path.isdir(path):
    images = datasets.read_idx(f"{path}/train-images-idx3-ubyte.gz")[:steps * BATCH, 6:22, 6:22, None] / 255.0
    labels = datasets.read_idx(f"{path}/train-labels-idx1-ubyte.gz")[:steps * BATCH]
  else:
    rng = np.random.default_rng(0)
    images, labels = rng.random((steps * BATCH, 16, 16, 1), np.float32), rng.integers(0, 10, steps * BATCH)
  return [(images[i * BATCH:(i + 1) * BATCH].astype(np.float32), labels[i * BATCH:(i + 1) * BATCH].astype(np.int32))
          for i in range(steps)]


def put(batch, mesh):
  """The batch sharded over 'data' (every process holds the same global batch), or as it is without a mesh."""
  if mesh is None:
    return batch
  sharding = NamedSharding(mesh, P("data"))
  return jax.tree.map(lambda x: jax.make_array_from_callback(x.shape, sharding, lambda i: x[i]), batch)


def gathered(x) -> np.ndarray:
  """A small global array (outputs) on every process's host."""
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def specs(params, mesh=None) -> dict:
  """{path: [partition spec, device count]} of every U / V factor; mesh axes of size 1 in ``mesh`` are left out
  (JAX may report P('data') as P() where 'data' has one device: the same placement)."""
  single = {name for name, size in (mesh.shape.items() if mesh is not None else ()) if size == 1}
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    name = trailing_dict_path(path)  # nnx.State paths end in the Variable's '.value'
    if name.endswith(("/U", "/V")):
      spec = [None if axis in single else axis for axis in getattr(leaf.sharding, "spec", ["single"])]
      while spec and spec[-1] is None:
        spec.pop()
      out[name] = [spec, len(leaf.sharding.device_set)]
  return out


def mesh_context(mesh):
  """``jax.set_mesh(mesh)`` (a no-op without one) and the FSDP logical axis rules (linen and NNX)."""
  stack = contextlib.ExitStack()
  if mesh is not None:
    stack.enter_context(jax.set_mesh(mesh))
  stack.enter_context(nn.logical_axis_rules(mesh_models.FSDP_RULES))
  return stack


def lm_loss(model, params, tokens):
  """Next-token cross-entropy + λo·orthogonality + λs·Hoyer (the paper's loss, in the user's own loss)."""
  logits = model.apply({"params": params}, tokens[:, :-1])
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()
  return ce + LAMBDA_O * regularizers.total_orthogonality(params) + LAMBDA_S * regularizers.total_sparsity(params)


def pinned_shardings(params):
  """``params``' own shardings where they are on a mesh (else None: unconstrained), for a step's ``out_shardings``:
  with Auto axes XLA may otherwise give the updated params other (equivalent or not) shardings."""
  return jax.tree.map(lambda x: x.sharding if isinstance(x.sharding, NamedSharding) else None, params)


def lm_step(model, tx, params):
  """The jitted train step; the updated params keep ``params``' shardings."""
  @functools.partial(jax.jit, out_shardings=(pinned_shardings(params), None, None))
  def step(params, opt_state, tokens):
    loss, grads = jax.value_and_grad(lambda p: lm_loss(model, p, tokens))(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss
  return step


def lm_init(model, tokens, mesh):
  """Params initialized under jit straight into their shardings (flax's logical-partitioning recipe)."""
  init = lambda key, x: nn.meta.unbox(model.init(key, x))["params"]  # noqa: E731
  if mesh is None:
    return jax.jit(init)(jax.random.key(0), tokens)
  abstract = jax.eval_shape(model.init, jax.random.key(0), tokens)
  shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(abstract), mesh, mesh_models.FSDP_RULES)["params"]
  return jax.jit(init, out_shardings=shardings)(jax.random.key(0), tokens)


def run_lm(mesh, directory: str) -> dict:
  batches = token_batches(5)
  model, tx, out = jaxsvd.svdify(mesh_models.DecoderLM()), optax.adam(3e-3), {"loss": []}
  with mesh_context(mesh):
    params = lm_init(model, put(batches[0][:, :-1], mesh), mesh)
    opt_state, step = tx.init(params), lm_step(model, tx, params)
    out["specs_before"] = specs(params)
    dense = lm_init(mesh_models.DecoderLM(), put(batches[0][:, :-1], mesh), mesh)  # a "trained" dense model
    out["specs_decomposed"] = specs(jaxsvd.decompose(model, {"params": dense}, batches[0][:, :-1])["params"])
    for tokens in batches[:3]:
      params, opt_state, loss = step(params, opt_state, put(tokens, mesh))
      out["loss"].append(float(loss))
    pruned, ranks, report = jaxsvd.prune(params, STRATEGY)
    opt_state = opt_state_after(tx, opt_state, params, pruned, report, "slice")
    model, params, step = model.with_ranks(ranks), pruned, lm_step(model.with_ranks(ranks), tx, pruned)
    out["ranks"], out["specs_after"] = ranks, specs(params)
    for tokens in batches[3:]:
      params, opt_state, loss = step(params, opt_state, put(tokens, mesh))
      out["loss"].append(float(loss))
    x = put(batches[0][:, :-1], mesh)
    expected = gathered(jax.jit(model.apply)({"params": params}, x))
    state = jaxsvd.TrainState.create(model.apply, {"params": params}, tx).replace(opt_state=opt_state)
    mngr = jaxsvd.checkpoint.manager(directory)
    jaxsvd.checkpoint.save(mngr, state, jax.random.key(0), model.record(params, x))
    jaxsvd.checkpoint.wait(mngr)
  target = make_mesh(f"1x{jax.device_count()}") if mesh is not None else None
  with mesh_context(target):
    restored = jaxsvd.checkpoint.restore(directory, model=mesh_models.DecoderLM(), mesh=target,
                                         rules=mesh_models.FSDP_RULES)
    got = gathered(jax.jit(restored.model.apply)(restored.variables, put(batches[0][:, :-1], target)))
    out["restored_diff"] = float(np.max(np.abs(got - expected)))
    out["restored_specs"] = specs(restored.variables["params"], target)
  return out


def vit_model(mesh) -> nnx.Module:
  """The NNX ViT built (sharded by its logical names under a mesh) and svdified in place."""
  eager = contextlib.nullcontext() if mesh is not None else nnx.use_eager_sharding(False)
  with eager:
    model = mesh_models.ViT(nnx.Rngs(0))
    jnnx.svdify(model)
  return model


def vit_step(graphdef, tx, params):
  """The jitted step on (params State, the rest): cross-entropy only; the SVD terms come from ``tx``. The updated
  params keep ``params``' shardings."""
  @functools.partial(jax.jit, out_shardings=(pinned_shardings(params), None, None))
  def step(params, rest, opt_state, images, labels):
    def loss_fn(p):
      logits = nnx.merge(graphdef, p, rest)(images)
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss
  return step


def run_vit(mesh, directory: str) -> dict:
  batches, out = image_batches(5), {"loss": []}
  reg = jaxsvd.RegularizerConfig(orthogonality=LAMBDA_O, sparsity=LAMBDA_S, sparsity_type="hoyer")
  tx = optax.chain(add_svd_regularization(reg), optax.adam(3e-3))
  with mesh_context(mesh):
    model = vit_model(mesh)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state, step = tx.init(params), vit_step(graphdef, tx, params)
    out["specs_before"] = specs(params)
    for images, labels in batches[:3]:
      params, opt_state, loss = step(params, rest, opt_state, *put((images, labels), mesh))
      out["loss"].append(float(loss))
    old = nnx.state(nnx.merge(graphdef, params, rest), nnx.Param)
    model, ranks, report = jnnx.prune(nnx.merge(graphdef, params, rest), STRATEGY)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    opt_state = opt_state_after(tx, opt_state, old, params, report, "slice")
    step, out["ranks"], out["specs_after"] = vit_step(graphdef, tx, params), ranks, specs(params)
    for images, labels in batches[3:]:
      params, opt_state, loss = step(params, rest, opt_state, *put((images, labels), mesh))
      out["loss"].append(float(loss))
    model = nnx.merge(graphdef, params, rest)
    x = put(batches[0][0], mesh)
    expected = gathered(nnx.jit(lambda m, x: m(x))(model, x))
    checkpoint_nnx.save(directory, model, step=5)
  target = make_mesh(f"1x{jax.device_count()}") if mesh is not None else None
  with mesh_context(target):
    eager = contextlib.nullcontext() if target is not None else nnx.use_eager_sharding(False)
    with eager:
      restored = checkpoint_nnx.restore(directory, lambda: mesh_models.ViT(nnx.Rngs(1))).model
    got = gathered(nnx.jit(lambda m, x: m(x))(restored, put(batches[0][0], target)))
    out["restored_diff"] = float(np.max(np.abs(got - expected)))
    out["restored_specs"] = specs(nnx.state(restored, nnx.Param), target)
  return out


def main(model: str, meshes: str, directory: str, *distributed: str) -> None:
  if distributed:
    coordinator, processes, process_id = distributed
    jax.distributed.initialize(coordinator, int(processes), int(process_id))
  run = {"lm": run_lm, "vit": run_vit}[model]
  out = {spec: run(make_mesh(spec), os.path.join(directory, spec)) for spec in meshes.split(",")}
  if jax.process_index() == 0:
    print(json.dumps(out))


if __name__ == "__main__":
  main(*sys.argv[1:])
