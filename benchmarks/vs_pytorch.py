"""jaxsvd vs a faithful PyTorch re-implementation of the SVD training step (Yang et al. 2020), same CPU, one run.

PyTorch side (written here, in the usual PyTorch form of SVD training): Conv2dSVD / LinearSVD modules holding U, s, V with
the weight rebuilt every forward (W = U·diag(s)·Vᵀ, then F.conv2d), the same ResNet (option-A
shortcuts, first conv and classifier dense), the same loss CE + λo·Σ orth + λs·Σ Hoyer, SGD-momentum.
Before timing, both frameworks are loaded with the *same* weights and must give the same loss.

  pip install -e '.[bench]'      # torch==2.13.0 (CPU)
  python -m benchmarks.vs_pytorch [--quick] [--models resnet20,resnet18]
"""

from __future__ import annotations

import os

import jax
import numpy as np

from benchmarks import common
from jaxsvd.models import SVDSpec
from jaxsvd.training.losses import RegularizerConfig, make_loss_fn

LAMBDA_O, LAMBDA_S = 1.0, 1e-3


def torch_modules():
  import torch
  import torch.nn.functional as F
  from torch import nn

  class Conv2dSVD(nn.Module):
    def __init__(self, U, s, V, kernel_shape, stride, padding):
      super().__init__()
      self.U, self.s, self.V = (nn.Parameter(torch.tensor(np.asarray(a))) for a in (U, s, V))
      self.kernel_shape, self.stride, self.padding = kernel_shape, stride, padding

    def forward(self, x):
      n, c, kh, kw = self.kernel_shape
      w = ((self.U * self.s) @ self.V.T).reshape(n, c, kh, kw)
      return F.conv2d(x, w, stride=self.stride, padding=self.padding)

  def orth(U, V):
    r = U.shape[1]
    eye = torch.eye(r)
    return ((U.T @ U - eye).pow(2).sum() + (V.T @ V - eye).pow(2).sum()) / r**2

  def hoyer(s):
    return s.abs().sum() / s.pow(2).sum().sqrt()

  class Block(nn.Module):
    def __init__(self, conv1, bn1, conv2, bn2, stride, out_ch, proj=None):
      super().__init__()
      self.conv1, self.bn1, self.conv2, self.bn2 = conv1, bn1, conv2, bn2
      self.stride, self.out_ch, self.proj = stride, out_ch, proj  # proj: option-B shortcut (conv, bn)

    def forward(self, x):
      y = F.relu(self.bn1(self.conv1(x)))
      y = self.bn2(self.conv2(y))
      if self.proj is not None:
        x = self.proj(x)
      elif self.stride != 1 or x.shape[1] != self.out_ch:
        x = x[:, :, ::self.stride, ::self.stride]
        extra = self.out_ch - x.shape[1]
        x = F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))
      return F.relu(x + y)

  return torch, nn, F, Conv2dSVD, Block, orth, hoyer


def torch_model_from_jax(params, batch_stats, channel_in=3):
  """The same network in PyTorch, weights copied from the jaxsvd params (layouts converted)."""
  torch, nn, F, Conv2dSVD, Block, orth, hoyer = torch_modules()

  def bn(p, s):
    m = nn.BatchNorm2d(p["scale"].shape[0], momentum=0.1, eps=1e-5)
    with torch.no_grad():
      m.weight.copy_(torch.tensor(np.asarray(p["scale"])))
      m.bias.copy_(torch.tensor(np.asarray(p["bias"])))
      m.running_mean.copy_(torch.tensor(np.asarray(s["mean"])))
      m.running_var.copy_(torch.tensor(np.asarray(s["var"])))
    return m

  def svd_conv(p, stride, k=3):
    U, s, V = (np.asarray(p[name]) for name in ("U", "s", "V"))
    c = V.shape[0] // (k * k)
    # jaxsvd orders V's rows as (kh, kw, c); torch's flattened weight is (c, kh, kw).
    V_t = V.reshape(k, k, c, -1).transpose(2, 0, 1, 3).reshape(k * k * c, -1)
    return Conv2dSVD(U, s, V_t, (U.shape[0], c, k, k), stride, k // 2)

  stem = nn.Conv2d(channel_in, params["stem"]["kernel"].shape[-1], 3, padding=1, bias=False)
  with torch.no_grad():
    stem.weight.copy_(torch.tensor(np.asarray(params["stem"]["kernel"]).transpose(3, 2, 0, 1)))
  blocks = []
  for name in sorted((k for k in params if k.startswith("stage")), key=lambda k: (int(k[5]), int(k.split("block")[1]))):
    p, s = params[name], batch_stats[name]
    stride = 2 if name.endswith("block0") and not name.startswith("stage1") else 1
    out_ch = p["conv1"]["U"].shape[0]
    proj = nn.Sequential(svd_conv(p["proj"], stride, 1), bn(p["proj_bn"], s["proj_bn"])) if "proj" in p else None
    blocks.append(Block(svd_conv(p["conv1"], stride), bn(p["bn1"], s["bn1"]), svd_conv(p["conv2"], 1),
                        bn(p["bn2"], s["bn2"]), stride, out_ch, proj))
  head = nn.Linear(*np.asarray(params["classifier"]["kernel"]).shape)
  with torch.no_grad():
    head.weight.copy_(torch.tensor(np.asarray(params["classifier"]["kernel"]).T))
    head.bias.copy_(torch.tensor(np.asarray(params["classifier"]["bias"])))
  net = nn.Sequential(stem, bn(params["stem_bn"], batch_stats["stem_bn"]), nn.ReLU(), *blocks,
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
  svd_layers = [m for m in net.modules() if isinstance(m, Conv2dSVD)]

  def loss_fn(x, y):
    ce = F.cross_entropy(net(x), y)
    return ce + LAMBDA_O * sum(orth(m.U, m.V) for m in svd_layers) + LAMBDA_S * sum(hoyer(m.s) for m in svd_layers)

  return torch, net, loss_fn


def compare(model_name: str, batch_size: int, repeats: int) -> dict:
  reg = RegularizerConfig(orthogonality=LAMBDA_O, sparsity=LAMBDA_S)
  state, model = common.make_state(model_name, SVDSpec(mode="reconstruct"))
  data = common.batch(batch_size)
  jax_loss, _ = make_loss_fn(model.apply, reg)(state.params, state.model_state, data)
  torch, net, loss_fn = torch_model_from_jax(jax.device_get(state.params), jax.device_get(state.model_state["batch_stats"]))
  x = torch.tensor(np.asarray(data["image"]).transpose(0, 3, 1, 2).copy())
  y = torch.tensor(np.asarray(data["label"]), dtype=torch.long)
  net.train()
  torch_loss = float(loss_fn(x, y).detach())
  if not np.isclose(float(jax_loss), torch_loss, rtol=1e-4):
    raise AssertionError(f"losses differ: jax {float(jax_loss):.6f} vs torch {torch_loss:.6f}")
  opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

  def torch_step():
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(x, y)
    loss.backward()
    opt.step()
    return loss.detach()

  auto_state, _ = common.make_state(model_name, SVDSpec(mode="auto"))
  times = common.alternate({"torch": torch_step, "jax": common.train_runner(auto_state, data, reg)}, repeats)
  t_torch, t_jax = times["torch"], times["jax"]
  return {"model": model_name, "loss jax": f"{float(jax_loss):.5f}", "loss torch": f"{torch_loss:.5f}",
          "jax ms": f"{t_jax * 1e3:.0f}", "torch ms": f"{t_torch * 1e3:.0f}", "jax/torch": t_jax / t_torch}


def main():
  models, batch_size, repeats = common.parse_models(__doc__)
  import torch

  torch.set_num_threads(os.cpu_count())  # XLA's CPU backend also uses every core
  rows = [compare(m, batch_size, repeats) for m in models]
  print(f"torch {torch.__version__} threads={torch.get_num_threads()}, jax {jax.__version__} "
        f"backend={jax.default_backend()}, batch={batch_size}, repeats={repeats} (median)")
  for r in rows:
    r["jax/torch"] = f"{r['jax/torch']:.2f}x"
  print(common.table(rows, list(rows[0])))
  print("KEY jaxsvd / PyTorch train-step time: " + ", ".join(f"{r['model']} {r['jax/torch']}" for r in rows))


if __name__ == "__main__":
  main()
