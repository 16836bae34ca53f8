"""Gradient variance of the Bernoulli estimators on one shared problem.

    python -m experiments.estimator_variance --num_runs=100000

The problem is the one the unbiasedness tests use (tests/test_bernoulli.py):
five units with logits (0.3, -1.2, 6, -6, 2) and a non-linear objective with
pairwise interactions. Prints, per estimator at its default cost, the
objective evaluations, the variance averaged over the five logit
coordinates, and the largest |z| of the mean against the exact enumerated
gradient.
"""

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from tf_discrete import bernoulli
from tf_discrete import diagnostics

_NUM_RUNS = flags.DEFINE_integer("num_runs", 100000, "Independent estimates.")
_SEED = flags.DEFINE_integer("seed", 0, "Stateless seed.")

LOGITS = np.array([0.3, -1.2, 6.0, -6.0, 2.0], np.float32)
_W = np.random.RandomState(0).randn(5, 5).astype(np.float32)
_A = np.array([1.0, -2.0, 0.5, 3.0, -1.0], np.float32)


def objective(b):
  """sum(a*b) + b'Wb + sin(2 sum b): non-linear with interactions."""
  d = b.shape[-1]
  return (tf.reduce_sum(b * _A[:d], -1)
          + tf.einsum("...i,ij,...j->...", b, _W[:d, :d], b)
          + tf.sin(2.0 * tf.reduce_sum(b, -1)))


def main(argv):
  del argv
  print(f"{'estimator':<12} {'evals':>5} {'mean Var[g_d]':>14} {'max |z|':>8}")
  for name in ["reinforce", "rloo", "ar", "arm", "disarm"]:
    evaluations = bernoulli.get(name).evaluations(None, [LOGITS.size])
    stats = diagnostics.estimator_stats(
        objective, LOGITS, name, num_runs=_NUM_RUNS.value, seed=_SEED.value)
    print(f"{name:<12} {evaluations:>5} {stats.mean_grad_var:>14.4f} "
          f"{np.max(np.abs(stats.grad_z)):>8.2f}")


if __name__ == "__main__":
  app.run(main)
