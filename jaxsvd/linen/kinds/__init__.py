"""Linen layer kinds: one module per flax linen layer class, each registering the ``Kind`` that holds everything
kind-specific (``base`` has the protocol and the registry; ``svdifylib``, ``flops``, ``calibration`` and
``jaxsvd.deploy.folding`` resolve it):

  dense           nn.Dense (+ DenseSVD)     n × c; native ``DenseSVD`` math when exactly ``nn.Dense``
  dense_general   nn.DenseGeneral           ∏out × ∏in per ``batch_dims`` index
  conv            nn.Conv (+ ConvSVD)       n/g × ∏k·c/g per group, or spatial; native ``ConvSVD`` math (plain 2-D)
  embed           nn.Embed                  features × vocab (lookup and ``attend``)
  einsum          nn.Einsum                 (letters only in out) × (letters only in lhs), stacked
  conv_transpose  nn.ConvTranspose          n × ∏k·c, or spatial
  conv_local      nn.ConvLocal              n × ∏k·c per output position
Every kind but the native ones runs the kernel way: its own ``__call__`` on U·diag(s)·Vᵀ rebuilt as its kernel
param (``jaxsvd.linen.conversion``). A new kind is one module with a ``Kind`` subclass (``layer``, ``view``;
optionally ``kernel_name``, ``reason``, ``moments``, ``macs``, the native hooks) and ``register(MyKind())``.
"""

from jaxsvd.linen.kinds import base as base
from jaxsvd.linen.kinds import conv as conv
from jaxsvd.linen.kinds import conv_local as conv_local
from jaxsvd.linen.kinds import conv_transpose as conv_transpose
from jaxsvd.linen.kinds import dense as dense
from jaxsvd.linen.kinds import dense_general as dense_general
from jaxsvd.linen.kinds import einsum as einsum
from jaxsvd.linen.kinds import embed as embed
from jaxsvd.linen.kinds.base import Kind as Kind
from jaxsvd.linen.kinds.base import register as register
from jaxsvd.linen.kinds.base import registered as registered
from jaxsvd.linen.kinds.base import resolve as resolve

__all__ = ["Kind", "register", "registered", "resolve", "base", "conv", "conv_local", "conv_transpose", "dense",
           "dense_general", "einsum", "embed"]
