"""svdify on user-style linen models (tests/user_models.py): a CNN with BatchNorm, a ResNet with a grouped conv, a
ViT encoder under nn.scan with logical partitioning, a decoder-only LM with tied embeddings.

Each: jit init/apply; decompose at full rank equals the dense flax model; energy prune + rebuild + apply equals the
dense model with the merged kernels; training steps with the regularizers lower the cross-entropy; a checkpoint
restores in a fresh process with identical outputs.
"""

import os
import subprocess
import sys
import textwrap

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as PS
from tests.user_models import CNN, ResNet, TransformerLM, ViT

from jaxsvd import checkpoint
from jaxsvd.core import regularizers
from jaxsvd.core.structure import ranks, stack_shapes
from jaxsvd.deploy import params as deploy_params
from jaxsvd.linen import decompose, flops, svdify
from jaxsvd.pruning import Strategy, prune
from jaxsvd.training.train_state import TrainState

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_rng = np.random.default_rng(0)
IMAGES = _rng.normal(size=(4, 8, 8, 3)).astype(np.float32)
LABELS = _rng.integers(0, 10, size=4).astype(np.int32)
TOKENS = _rng.integers(0, 32, size=(4, 9)).astype(np.int32)
MODELS = {"cnn": (CNN, IMAGES, LABELS), "resnet": (ResNet, IMAGES, LABELS), "vit": (ViT, IMAGES, LABELS),
          "lm": (TransformerLM, TOKENS[:, :-1], TOKENS[:, 1:])}


def _rel(a, b):
  return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def _cross_entropy(svd_model, params, model_state, x, y):
  mutable = list(model_state) or False
  out = svd_model.apply({"params": params, **model_state}, x, train=True, mutable=mutable)
  logits, new_state = out if mutable else (out, {})
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new_state


def _train(svd_model, variables, x, y, steps=3):
  """``steps`` Adam steps on CE + λo·orthogonality + λs·Hoyer; the CE before and after."""
  tx = optax.adam(1e-2)
  params, model_state = variables["params"], {k: v for k, v in variables.items() if k != "params"}

  def loss(params, model_state):
    ce, new_state = _cross_entropy(svd_model, params, model_state, x, y)
    reg = 1e-2 * regularizers.total_orthogonality(params) + 1e-3 * regularizers.total_sparsity(params, "hoyer")
    return ce + reg, (ce, new_state)

  @jax.jit
  def step(params, opt_state, model_state):
    (_, (ce, model_state)), grads = jax.value_and_grad(loss, has_aux=True)(params, model_state)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, model_state, ce

  opt_state, ces = tx.init(params), []
  for _ in range(steps):
    params, opt_state, model_state, ce = step(params, opt_state, model_state)
    ces.append(float(ce))
  return ces


# resnet (slow): the CNN's code path plus a grouped conv, which svdify_layers_test covers unmarked
@pytest.mark.parametrize("name", ["cnn", pytest.param("resnet", marks=pytest.mark.slow),  # lm: the transformer
                                  pytest.param("vit", marks=pytest.mark.slow), "lm"])
def test_user_model_decompose_prune_train(name):
  cls, x, y = MODELS[name]
  model, svd_model = cls(), svdify(cls())
  variables = nn.unbox(jax.jit(lambda k, x: svd_model.init(k, x, train=False))(jax.random.key(0), x))
  apply = jax.jit(lambda m, v, x: m.apply(v, x, train=False), static_argnums=0)
  report = svd_model.report(x, train=False)
  assert ranks(variables["params"]).keys() == report.converted.keys() and not report.dense

  template = nn.unbox(jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x))["params"]
  merged_init = deploy_params.merged_params(variables["params"], template, views=report.views)
  dense_params = jax.tree.map(lambda a: a + 0.1 * np.sign(a), merged_init)
  dense = {**variables, "params": dense_params}  # a dense model of the user's, not at any SVD's rank by construction
  full = decompose(svd_model, dense, x, train=False)
  assert _rel(apply(svd_model, full, x), apply(model, dense, x)) <= 1e-4

  params, new_ranks, _ = prune(full["params"], Strategy("energy", energy=0.05))
  pruned = svd_model.with_ranks(new_ranks)
  assert sum(new_ranks.values()) < sum(ranks(full["params"]).values())
  out = apply(pruned, {**full, "params": params}, x)
  merged = deploy_params.merged_params(params, dense["params"], views=report.views)
  assert _rel(out, apply(model, {**dense, "params": merged}, x)) <= 1e-4

  ces = _train(pruned, {**full, "params": params}, x, y)
  assert ces[-1] < ces[0], ces


def test_vit_stacked_layers_keep_their_logical_axes():
  x = IMAGES
  variables = svdify(ViT()).init(jax.random.key(0), x)
  specs = nn.get_partition_spec(variables)["params"]
  query = specs["encoder"]["MultiHeadDotProductAttention_0"]["query"]
  assert (query["U"], query["s"], query["V"]) == (PS("layers", "heads", "rank"), PS("layers", "rank"),
                                                  PS("layers", "embed", "rank"))
  mlp = specs["encoder"]["Dense_0"]  # kernel ('embed', 'mlp'): U on the output side
  assert (mlp["U"], mlp["V"]) == (PS("layers", "mlp", "rank"), PS("layers", "embed", "rank"))
  assert specs["patches"]["V"] == PS(None, "rank")  # (kh, kw, c) flattened: named by its leading axis kh
  params = nn.unbox(variables)["params"]
  assert stack_shapes(params)["encoder/MultiHeadDotProductAttention_0/query"] == (2,)
  chex.assert_shape(params["encoder"]["MultiHeadDotProductAttention_0"]["query"]["U"], (2, 16, 16))
  query = "encoder/MultiHeadDotProductAttention_0/query"  # 5 tokens · 16 → 16, once per scanned block
  assert flops.count(ViT(), x.shape[1:]).layers[query].macs == 2 * 5 * 16 * 16
  low = flops.count(svdify(ViT(), {query: 4}), x.shape[1:]).layers[query]
  assert (low.macs, low.params) == (2 * 5 * 4 * (16 + 16), 2 * (4 * (16 + 16) + 16))  # + the (2, 8) bias


CLASSES = {"cnn": "CNN", "resnet": "ResNet", "vit": "ViT", "lm": "TransformerLM"}
KEY_TYPES = {"cnn": "key<rbg>", "resnet": "key<fry>", "vit": "key<fry>", "lm": "uint32"}


@pytest.mark.parametrize("names", [("cnn", "lm"), pytest.param(("resnet", "vit"), marks=pytest.mark.slow)])
def test_checkpoints_restore_in_a_fresh_process(tmp_path, names):
  outputs, keys = {}, {"cnn": jax.random.key(3, impl="rbg"), "lm": jax.random.PRNGKey(4)}
  for name in names:
    cls, x, _ = MODELS[name]
    svd_model = svdify(cls())
    variables = nn.unbox(svd_model.init(jax.random.key(0), x, train=False))
    params, new_ranks, _ = prune(variables["params"], Strategy("energy", energy=0.2))
    svd_model = svd_model.with_ranks(new_ranks)
    state = TrainState.create(svd_model.apply, {**variables, "params": params}, optax.sgd(0.1))
    record = svd_model.record(state.params, x, train=False)
    with checkpoint.manager(str(tmp_path / name), async_save=False) as mngr:
      checkpoint.save(mngr, state, keys.get(name, jax.random.key(5)), record)
    outputs[name] = np.asarray(jax.jit(lambda v, x, m=svd_model: m.apply(v, x, train=False))(state.variables, x))
    np.save(tmp_path / f"{name}_x.npy", x)
  code = textwrap.dedent(f"""
      import sys, jax, optax, numpy as np
      sys.path.insert(0, {os.path.join(REPO, 'tests')!r})
      import user_models
      from jaxsvd import checkpoint
      for name, cls in {[(n, CLASSES[n]) for n in names]!r}:
        r = checkpoint.restore({str(tmp_path)!r} + "/" + name, model=getattr(user_models, cls)())
        x = np.load({str(tmp_path)!r} + f"/{{name}}_x.npy")
        y = jax.jit(lambda v, x: r.model.apply(v, x, **r.architecture.user["call_kwargs"]))(r.variables, x)
        np.save({str(tmp_path)!r} + f"/{{name}}_y.npy", np.asarray(y))
        opt_state = jax.eval_shape(optax.sgd(0.1).init, r.variables["params"])
        rng = checkpoint.restore_train(r.directory, r.step, opt_state)["rng"]
        print(name, rng.dtype)
  """)
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.split() == [word for n in names for word in (n, KEY_TYPES[n])]
  for name in names:
    np.testing.assert_array_equal(np.load(tmp_path / f"{name}_y.npy"), outputs[name])


def test_restore_needs_the_users_module_of_the_saved_class(tmp_path):
  svd_model = svdify(CNN())
  variables = svd_model.init(jax.random.key(0), IMAGES)
  state = TrainState.create(svd_model.apply, variables, optax.sgd(0.1))
  with checkpoint.manager(str(tmp_path), async_save=False) as mngr:
    checkpoint.save(mngr, state, jax.random.key(0), svd_model.record(state.params, IMAGES, train=False))
  with pytest.raises(checkpoint.CheckpointError, match="pass it: restore"):
    checkpoint.restore(str(tmp_path))
  with pytest.raises(checkpoint.CheckpointError, match="the module passed is a ResNet"):
    checkpoint.restore(str(tmp_path), model=ResNet())


def test_sequential_layer_paths_are_the_param_paths():
  """Regression (0.3.0): ``nn.Sequential``'s layers were reported at 'model/layers_0' while their params live at
  'layers_0', so ranks, ``decompose`` and ``with_ranks`` after a prune failed."""
  x = jnp.ones((1, 8))
  dense_model = nn.Sequential([nn.Dense(8), nn.Dense(4)])
  svd_model = svdify(dense_model, ranks={"layers_0": 2})
  variables = svd_model.init(jax.random.key(0), x)
  assert ranks(variables["params"]) == {"layers_0": 2, "layers_1": 4}
  assert sorted(svd_model.report(x).converted) == ["layers_0", "layers_1"]
  decomposed = decompose(svd_model, dense_model.init(jax.random.key(1), x), x)
  chex.assert_trees_all_equal_shapes(decomposed["params"], variables["params"])
  params, new_ranks, _ = prune(decomposed["params"], Strategy("count", prune_by=1))
  assert new_ranks == {"layers_0": 1, "layers_1": 3}
  smaller = svd_model.with_ranks(new_ranks)
  chex.assert_trees_all_equal_shapes(smaller.init(jax.random.key(0), x)["params"], params)
  assert smaller.apply({"params": params}, x).shape == (1, 4)
