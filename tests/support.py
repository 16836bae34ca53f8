"""Helpers shared by the test modules (fixtures are in conftest.py)."""

import os
import subprocess
import sys

# The repository: tests run commands from here (experiments/ is not
# installed, it runs from the checkout).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Environment of the commands the tests start: quiet TensorFlow, the
# checkout importable.
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT}


def run_module(module, *args, timeout=600, env=None, check=True):
  """Runs ``python -m module args`` from the checkout; the CompletedProcess
  (stdout and stderr as text)."""
  result = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT,
                          env={**ENV, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)
  if check:
    assert result.returncode == 0, (result.stdout[-2000:] +
                                    result.stderr[-4000:])
  return result


def assert_same_in_eager_graph_xla(estimate, logits, seed, other_seed,
                                   grad_rtol=1e-5):
  """``estimate(logits, seed) -> [*batch]``: the value and its gradient
  w.r.t. ``logits`` agree eagerly, in ``tf.function`` and under XLA for the
  same seed, and the gradient changes with ``other_seed``."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  def run(logits, seed):
    with tf.GradientTape() as tape:
      tape.watch(logits)
      value = estimate(logits, seed)
      total = tf.reduce_sum(value)
    return value, tape.gradient(total, logits)

  eager = run(logits, seed)
  graph = tf.function(run)(logits, seed)
  xla = tf.function(run, jit_compile=True)(logits, seed)
  for other in (graph, xla):
    np.testing.assert_allclose(eager[0], other[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(eager[1], other[1], rtol=grad_rtol,
                               atol=1e-5)
  different = run(logits, other_seed)
  assert not np.allclose(eager[1], different[1])
