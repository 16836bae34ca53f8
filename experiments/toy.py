r"""Toy problems: every estimator of a family trained at equal objective cost.

    python -m experiments.toy --family=categorical --num_categories=10 --R=3
    python -m experiments.toy --family=bernoulli --num_units=1 --p0=0.49

Problems (minimized; the exact loss is computed by enumeration):

* categorical: one variable :math:`b \sim \mathrm{Cat}(\mathrm{softmax}\,
  \theta)`, :math:`b \in \{0, \dots, C-1\}`, loss
  :math:`\mathbb{E}[0.5 + b/(C R)]`, optimum 0.5 (all mass on b = 0). This
  is the toy of Yin, Yue, Zhou (ICML 2019), who maximize
  :math:`\mathbb{E}[0.5 + z/(CR)]` over :math:`z \in \{1..C\}`, with the
  categories relabeled (b = C - z) and the sign flipped: the same problem up
  to a constant. The gaps between categories are :math:`1/(CR)`, so a large R
  makes the signal tiny relative to the noise.
* bernoulli: D units :math:`b_d \sim \mathrm{Bern}(\sigma(\theta_d))`, loss
  :math:`\mathbb{E}[\frac1D \sum_d (b_d - p_0)^2]` (Tucker et al. 2017; Yin &
  Zhou 2019; Dong et al. 2020), optimum :math:`p_0^2` at b = 0.

Equal cost. Every estimator gets the same total number of objective
evaluations (``--total_evals``). Estimators whose cost is a choice (REINFORCE,
RLOO, AR: K; the DisARM variants / ARM: pairs) use ``--evals_per_step``
evaluations per step (default: C for categorical, so RLOO is at its default
and matches ARS; 2 for Bernoulli); fixed-cost estimators use their own
(ARS/ARS+: C, ARSM/ARSM+: C(C-1)/2 + 1) and therefore take fewer steps.
``disarm_tree`` runs only when C is a power of 2.

Printed per estimator: objective evaluations per step (as measured by
counting the samples the objective receives), steps, the gradient variance
at the initial logits (theta = 0; mean over coordinates of
:math:`\mathrm{Var}[\hat g]`, from ``--num_runs`` independent estimates, per
step) and that variance times the evaluations per step (the variance at
equal cost: averaging n independent one-evaluation estimates divides by n),
the variance averaged over checkpoints along the estimator's own training
run, and the final excess loss (exact loss minus optimum). A PNG of the
excess-loss curves against objective evaluations goes to ``--output_dir``.
"""

import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import keras  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from experiments import cli  # pylint: disable=g-import-not-at-top
from experiments.cli import Flag  # pylint: disable=g-import-not-at-top
import tf_discrete  # pylint: disable=g-import-not-at-top
from tf_discrete import bernoulli  # pylint: disable=g-import-not-at-top
from tf_discrete import categorical  # pylint: disable=g-import-not-at-top
from tf_discrete import diagnostics  # pylint: disable=g-import-not-at-top

FLAG_SPECS = {
    "family": Flag("enum", "categorical", "Latent family.",
                   dict(enum_values=["categorical", "bernoulli"])),
    "num_categories": Flag("integer", 10, "C (categorical).",
                           dict(lower_bound=2)),
    "R": Flag("float", 3.0, "Scale R of the categorical toy."),
    "num_units": Flag("integer", 1, "D (bernoulli).", dict(lower_bound=1)),
    "p0": Flag("float", 0.49, "Target p0 (bernoulli)."),
    "estimators": Flag(
        "list", None, "Estimators to run (default: all single-sample-bound "
        "estimators of the family)."),
    "evals_per_step": Flag(
        "integer", None, "Objective evaluations per step for estimators "
        "with a choice (default: C for categorical, 2 for bernoulli)."),
    "total_evals": Flag("integer", 30000,
                        "Objective evaluations per estimator (training)."),
    "optimizer": Flag(
        "enum", "adam", "Optimizer of theta. Adam is invariant to the scale "
        "of f, so with it R only matters for estimators without a baseline "
        "(reinforce, ar); use sgd to make R matter for all.",
        dict(enum_values=["adam", "sgd"])),
    "learning_rate": Flag("float", 0.05, "Step size."),
    "num_runs": Flag("integer", 2000,
                     "Independent estimates per variance measurement."),
    "num_checkpoints": Flag("integer", 5,
                            "Variance measurements along each training run."),
    "seed": Flag("integer", 0, "Seed."),
    "output_dir": Flag("string", "/tmp/tf_discrete_toy",
                       "Where the PNG and the table go."),
}



def default_estimators(module):
  """The family's estimators of E_q[f] (the toy losses are expectations;
  multi-sample-bound estimators optimise something else), from their
  declared facts."""
  return [name for name, est in module.REGISTRY.items()
          if est.facts.estimates is tf_discrete.Estimates.MEAN]


class Problem:
  """A toy problem: logits shape, objective, exact loss and optimum."""

  def __init__(self, family, num_categories=10, R=3.0, num_units=1,
               p0=0.49):
    self.family = family
    if family == "categorical":
      self.module = categorical
      self.shape = [1, num_categories]  # V = 1 variable.
      costs = 0.5 + np.arange(num_categories) / (num_categories * R)
      self._costs = tf.constant(costs, tf.float32)
      self.optimum = 0.5
      self.event_shape = [1, num_categories]
    else:
      self.module = bernoulli
      self.shape = [num_units]
      self.p0 = p0
      self.optimum = p0**2
      self.event_shape = [num_units]

  def objective(self, samples):
    if self.family == "categorical":
      return tf.reduce_sum(samples * self._costs, axis=[-2, -1])
    return tf.reduce_mean((samples - self.p0)**2, axis=-1)

  def exact_loss(self, theta):
    """E_q[loss] in closed form (enumeration of the C states / per unit)."""
    if self.family == "categorical":
      return tf.reduce_sum(tf.nn.softmax(theta, axis=-1) * self._costs)
    p = tf.sigmoid(theta)
    return tf.reduce_mean(p * (1.0 - self.p0)**2 + (1.0 - p) * self.p0**2)


def _num_samples(problem, name, evals_per_step):
  """num_samples argument giving ~evals_per_step evaluations, or None."""
  cost = problem.module.get(name).facts.cost
  if cost.fixed:
    return None
  rounded = cost.multiple * -(-evals_per_step // cost.multiple)
  return max(cost.minimum, rounded)


def measured_evaluations(problem, name, num_samples):
  """Samples the objective receives in one estimate (counted)."""
  seen = []

  def counting(samples):
    seen.append(int(samples.shape[0]))
    return problem.objective(samples)

  problem.module.estimate(counting, tf.zeros(problem.shape), name,
                          num_samples=num_samples, seed=0)
  assert len(seen) == 1, seen
  return seen[0]


def gradient_variance(problem, theta, name, num_samples, num_runs, seed):
  stats = diagnostics.estimator_stats(
      problem.objective, theta, name, family=problem.family,
      num_runs=num_runs, num_samples=num_samples, seed=seed)
  return stats.mean_grad_var


def train(problem, name, num_samples, steps, learning_rate, num_checkpoints,
          num_runs, seed, optimizer="adam"):
  """Trains theta; returns (steps done, excess losses, checkpoint variances)."""
  theta = tf.Variable(tf.zeros(problem.shape), name="theta")
  if optimizer == "adam":
    optimizer = keras.optimizers.Adam(learning_rate)
  else:
    optimizer = keras.optimizers.SGD(learning_rate)
  optimizer.build([theta])
  module = problem.module

  @tf.function
  def run_steps(start, count):
    for step in tf.range(start, start + count):
      with tf.GradientTape() as tape:
        loss = tf.reduce_sum(module.estimate(
            problem.objective, theta, name, num_samples=num_samples,
            seed=tf.stack([seed, step])))
      optimizer.apply_gradients([(tape.gradient(loss, theta), theta)])
    return problem.exact_loss(theta)

  chunk = max(1, steps // (num_checkpoints * 10))
  losses = [float(problem.exact_loss(theta)) - problem.optimum]
  done_steps = [0]
  variances = []
  checkpoint_every = max(1, steps // num_checkpoints)
  step = 0
  while step < steps:
    count = min(chunk, steps - step)
    loss = run_steps(tf.constant(step), tf.constant(count))
    step += count
    losses.append(float(loss) - problem.optimum)
    done_steps.append(step)
    if step % checkpoint_every < count or step == steps:
      variances.append(gradient_variance(
          problem, tf.convert_to_tensor(theta), name, num_samples, num_runs,
          [seed + 1, step]))
  return np.array(done_steps), np.array(losses), np.array(variances)


def run_toy(family="categorical", num_categories=10, R=3.0, num_units=1,
            p0=0.49, estimators=None, evals_per_step=None, total_evals=30000,
            learning_rate=0.05, num_runs=2000, num_checkpoints=5, seed=0,
            output_dir="/tmp/tf_discrete_toy", optimizer="adam",
            verbose=True):
  """Trains every estimator; prints and returns the table, writes the PNG.

  Returns:
    ``(rows, png_path)``: one dict per estimator.
  """
  problem = Problem(family, num_categories, R, num_units, p0)
  if estimators is None:
    estimators = default_estimators(problem.module)
  if evals_per_step is None:
    evals_per_step = num_categories if family == "categorical" else 2
  rows = []
  curves = {}
  for name in estimators:
    try:
      problem.module.get(name).check_event_shape(problem.event_shape)
    except ValueError as e:
      if verbose:
        print(f"# skipping {name}: {e}")
      continue
    start = time.time()
    num_samples = _num_samples(problem, name, evals_per_step)
    evals = measured_evaluations(problem, name, num_samples)
    expected = problem.module.get(name).evaluations(num_samples,
                                                    problem.event_shape)
    assert evals == expected, (name, evals, expected)
    steps = max(1, total_evals // evals)
    var_init = gradient_variance(problem, tf.zeros(problem.shape), name,
                                 num_samples, num_runs, [seed + 2, 0])
    done, losses, variances = train(
        problem, name, num_samples, steps, learning_rate, num_checkpoints,
        num_runs, seed, optimizer)
    curves[name] = (done * evals, losses)
    rows.append(dict(estimator=name, evals=evals, steps=steps,
                     var_init=var_init, var_cost=var_init * evals,
                     var_path=float(np.mean(variances)),
                     final_excess=float(losses[-1]),
                     seconds=time.time() - start))
  table = format_table(problem, rows, R, p0, evals_per_step, total_evals,
                       f"{optimizer}(lr={learning_rate:g})")
  os.makedirs(output_dir, exist_ok=True)
  png_path = os.path.join(output_dir, f"toy_{family}.png")
  _plot(curves, problem, R, p0, png_path)
  with open(os.path.join(output_dir, f"toy_{family}.txt"), "w") as f:
    f.write(table + "\n")
  if verbose:
    print(table)
    print(f"# wrote {png_path}")
  return rows, png_path


def format_table(problem, rows, R, p0, evals_per_step, total_evals,
                 optimizer):
  if problem.family == "categorical":
    title = (f"# categorical toy: C={problem.shape[-1]}, R={R:g}, loss "
             f"E[0.5 + b/(C R)], optimum 0.5")
  else:
    title = (f"# bernoulli toy: D={problem.shape[-1]}, p0={p0:g}, loss "
             f"E[mean_d (b_d - p0)^2], optimum {p0**2:g}")
  title += (f"; {total_evals} objective evaluations per estimator, "
            f"{evals_per_step} per step where adjustable; {optimizer}")
  header = ("| estimator | evals/step | steps | Var@init | Var@init x evals "
            "| Var (training) | final excess loss |")
  lines = [title, header, "|---|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    lines.append(
        f"| {r['estimator']} | {r['evals']} | {r['steps']} | "
        f"{r['var_init']:.3e} | {r['var_cost']:.3e} | {r['var_path']:.3e} | "
        f"{r['final_excess']:.3e} |")
  return "\n".join(lines)


def _plot(curves, problem, R, p0, path):
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for name, (evals, losses) in curves.items():
    ax.plot(evals, np.maximum(losses, 1e-12), label=name)
  ax.set_yscale("log")
  ax.set_xlabel("objective evaluations")
  ax.set_ylabel("exact loss - optimum")
  if problem.family == "categorical":
    ax.set_title(f"categorical toy, C={problem.shape[-1]}, R={R:g}")
  else:
    ax.set_title(f"bernoulli toy, D={problem.shape[-1]}, p0={p0:g}")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(values):
  run_toy(**values)


if __name__ == "__main__":
  cli.run_program(FLAG_SPECS, main)
