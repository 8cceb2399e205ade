"""``jaxsvd.core.registry``: functions resolved by name, their providers imported on first lookup, so a zoo checkpoint
restores, a zoo record's MACs are counted and ``eval_step(mode=)`` works without the caller importing linen."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxsvd.core import registry

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "v0_3_1")

# A fresh interpreter that imports only framework-neutral code and the checkpoint package, then uses the zoo.
PROBE = """
import json, sys
import numpy as np
from jaxsvd import checkpoint
from jaxsvd.pruning import budget
from jaxsvd.training.train_state import TrainState, eval_step
before = sorted(m for m in sys.modules if m.startswith(("jaxsvd.linen", "jaxsvd.models")))
restored = checkpoint.restore({fixture!r})                    # 'zoo' -> jaxsvd.models
x = np.load({x!r})
logits = restored.model.apply(restored.variables, x, train=False)
counter = budget.MacsCounter.for_architecture(restored.architecture, list(restored.architecture.ranks))  # 'macs/zoo'
state = TrainState(step=0, params=restored.variables["params"],
                   model_state={{k: v for k, v in restored.variables.items() if k != "params"}}, opt_state=None,
                   apply_fn=restored.model.apply, tx=None)
batch = {{"image": x, "label": np.zeros(len(x), np.int32)}}
sums = [eval_step(state, batch, mode=m) for m in (None, "reconstruct", "factored")]   # 'mode/linen'
print(json.dumps({{"before": before, "logits": np.asarray(logits).tolist(), "dense": counter.dense,
                  "at_ranks": counter.at_ranks(dict(restored.architecture.ranks)),
                  "loss": [float(s["loss_sum"]) for s in sums]}}))
"""


def test_a_fresh_process_finds_the_zoo_by_name():
  probe = PROBE.format(fixture=os.path.join(FIXTURES, "zoo"), x=os.path.join(FIXTURES, "x.npy"))
  out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  got = json.loads(out.stdout.splitlines()[-1])
  assert got["before"] == []  # nothing of linen was loaded before the first lookup
  np.testing.assert_allclose(got["logits"], np.load(os.path.join(FIXTURES, "zoo_logits.npy")), rtol=1e-5, atol=1e-5)
  assert 0 < got["at_ranks"] < got["dense"]  # a pruned SVD model: fewer MACs than dense
  np.testing.assert_allclose(got["loss"], got["loss"][0], rtol=1e-4)  # every execution mode: the same function


def test_a_name_no_one_provides_is_a_one_line_error():
  with pytest.raises(ValueError, match=r"no builder 'nope' is registered \(registered: .*'zoo'"):
    registry.lookup("nope")
  assert {"zoo", "user/linen", "macs/zoo"} <= set(registry.names())


def test_loaded_lists_what_is_registered():
  registry.register("test/probe", len)  # a name no code iterates
  assert registry.loaded("test/") == ("test/probe",) and registry.lookup("test/probe") is len
  assert set(registry.loaded()) <= set(registry.names())
