"""Gradient variance of the Bernoulli estimators on one shared problem.

    python -m experiments.estimator_variance --num_runs=100000

The problem is the one the unbiasedness tests use
(`tf_discrete.examples.LOGITS` and `interaction_objective`):
five units with logits (0.3, -1.2, 6, -6, 2) and a non-linear objective with
pairwise interactions. Prints, per estimator at its default cost, the
objective evaluations, the variance averaged over the five logit
coordinates, and the largest |z| of the mean against the exact enumerated
gradient.
"""

from absl import app
from absl import flags
import numpy as np

from tf_discrete import bernoulli
from tf_discrete import diagnostics
from tf_discrete.examples import LOGITS
from tf_discrete.examples import interaction_objective as objective

_NUM_RUNS = flags.DEFINE_integer("num_runs", 100000, "Independent estimates.")
_SEED = flags.DEFINE_integer("seed", 0, "Stateless seed.")


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
