"""Checkpoints that own their architecture record: restoring needs nothing but the directory.

  format      the on-disk format (Orbax items model/train/architecture/meta): ``manager``, ``save``, ``restore_item``
  restoring   ``restore``: record → model → ``jax.eval_shape`` → arrays (zoo models, user linen and NNX models)
  nnx         ``save`` / ``restore`` of svdified Flax NNX models in the same format
  integrity   CRC-32 of every item file, verified on read; non-finite arrays never saved
  workdir     the run directory's lock (one writer per workdir)

Imports Orbax: ``import jaxsvd`` loads this package only when it is first used.
"""

from jaxsvd.checkpoint import format as format  # noqa: A004 - the checkpoint format module (flax: ``serialization``)
from jaxsvd.checkpoint import integrity as integrity
from jaxsvd.checkpoint import nnx as nnx
from jaxsvd.checkpoint import restoring as restoring
from jaxsvd.checkpoint import workdir as workdir
from jaxsvd.checkpoint.format import Restored as Restored
from jaxsvd.checkpoint.format import check as check
from jaxsvd.checkpoint.format import library_version as library_version
from jaxsvd.checkpoint.format import manager as manager
from jaxsvd.checkpoint.format import read_architecture as read_architecture
from jaxsvd.checkpoint.format import read_meta as read_meta
from jaxsvd.checkpoint.format import resolve as resolve
from jaxsvd.checkpoint.format import restore_item as restore_item
from jaxsvd.checkpoint.format import restore_train as restore_train
from jaxsvd.checkpoint.format import save as save
from jaxsvd.checkpoint.format import steps as steps
from jaxsvd.checkpoint.format import wait as wait
from jaxsvd.checkpoint.integrity import CheckpointError as CheckpointError
from jaxsvd.checkpoint.integrity import CheckpointSaveError as CheckpointSaveError
from jaxsvd.checkpoint.restoring import abstract_variables as abstract_variables
from jaxsvd.checkpoint.restoring import restore as restore
from jaxsvd.checkpoint.restoring import restore_variables as restore_variables

__all__ = ["CheckpointError", "CheckpointSaveError", "Restored", "abstract_variables", "library_version", "manager",
           "read_architecture", "read_meta", "resolve", "restore", "restore_item", "restore_train",
           "restore_variables", "save", "steps", "wait", "check", "format", "integrity", "nnx", "restoring", "workdir"]
