"""Exact gradients by enumeration and Monte Carlo checks of estimators.

For small problems the expectation is a finite sum,

.. math:: \\mathbb{E}_q[f] = \\sum_b q_\\theta(b) f(b),

so its gradient is exact by automatic differentiation of the sum. For the
K-sample bound :math:`\\mathbb{E}[\\log \\frac1K \\sum_k e^{f(b_k)}]` the sum
runs over all K-tuples of states. These are the ground truth the estimators
are tested against.

Families plug in through their ``FAMILY`` object (``log_prob`` and
``enumerate_states``); pass the family by name ("bernoulli",
"categorical").
"""

import dataclasses
import importlib
import itertools

import numpy as np
import tensorflow as tf

from tf_discrete import _core


def get_family(family) -> _core.Family:
  """Resolves a family name (e.g. "bernoulli") to its :class:`Family`."""
  if isinstance(family, _core.Family):
    return family
  try:
    return importlib.import_module(f"tf_discrete.{family}").FAMILY
  except (ModuleNotFoundError, AttributeError):
    raise ValueError(
        f"Unknown `family` {family!r}; expected 'bernoulli' or "
        f"'categorical'.") from None


def exact_value_and_gradient(objective, logits, family="bernoulli",
                             num_samples=1):
  """Exact E_q[f] (or the K-sample bound) and its gradient w.r.t. logits.

  Args:
    objective: same contract as the estimators: ``[S, *batch, *event] ->
      [S, *batch]``, each sample's value depending on that sample only.
    logits: ``[*batch, *event]``.
    family: "bernoulli", "categorical" or a Family.
    num_samples: K. 1 gives E_q[f]; K > 1 gives the bound
      E[log mean_k exp f(b_k)] over K independent samples. The work grows as
      (number of states)^K.

  Returns:
    ``(value [*batch], gradient [*batch, *event])``.
  """
  family = get_family(family)
  logits = _core.convert_logits(logits, family.event_rank, family.event_desc)
  event_shape = logits.shape[-family.event_rank:].as_list()
  states = tf.cast(family.enumerate_states(event_shape), logits.dtype)
  num_states = states.shape[0]
  batch_rank = logits.shape.rank - family.event_rank
  if num_states**num_samples > 2**20:
    raise ValueError(
        f"Enumeration needs {num_states}^{num_samples} terms; too many for "
        f"an exact gradient. Use a smaller problem.")
  broadcast_states = tf.reshape(
      states, [num_states] + [1] * batch_rank + event_shape)
  broadcast_states = tf.broadcast_to(
      broadcast_states, tf.concat([[num_states], tf.shape(logits)], 0))
  with tf.GradientTape() as tape:
    tape.watch(logits)
    log_q = family.log_prob(broadcast_states, logits)  # [N, *batch]
    values = objective(broadcast_states)  # [N, *batch]
    if num_samples == 1:
      result = tf.reduce_sum(tf.exp(log_q) * values, axis=0)
    else:
      tuples = np.array(
          list(itertools.product(range(num_states), repeat=num_samples)))
      tuple_log_q = tf.reduce_sum(tf.gather(log_q, tuples), axis=1)
      tuple_bound = _core.log_mean_exp(tf.gather(values, tuples), axis=1)
      result = tf.reduce_sum(tf.exp(tuple_log_q) * tuple_bound, axis=0)
  return result, tape.gradient(result, logits)


@dataclasses.dataclass
class EstimatorStats:
  """Summary of many independent runs of an estimator.

  Attributes:
    value_mean, value_var: mean and variance of the returned estimate.
    grad_mean, grad_var: per-coordinate mean and variance of the gradient.
    exact_value, exact_grad: the enumerated ground truth.
    value_z, grad_z: z-scores ``(mean - exact) / sqrt(var / num_runs)``.
    num_runs: number of independent runs.
  """
  value_mean: np.ndarray
  value_var: np.ndarray
  grad_mean: np.ndarray
  grad_var: np.ndarray
  exact_value: np.ndarray
  exact_grad: np.ndarray
  value_z: np.ndarray
  grad_z: np.ndarray
  num_runs: int

  @property
  def mean_grad_var(self) -> float:
    """Variance averaged over gradient coordinates (a scalar to compare)."""
    return float(np.mean(self.grad_var))


def _z_score(mean, var, exact, num_runs):
  scale = np.sqrt(var / num_runs)
  # A zero-variance coordinate is either exactly right (z = 0) or a bias.
  return np.where(scale > 0, (mean - exact) / np.maximum(scale, 1e-30),
                  np.where(np.isclose(mean, exact), 0.0, np.inf))


def estimator_stats(objective, logits, estimator, family="bernoulli",
                    num_runs=10000, num_samples=None, seed=0, bound_samples=1,
                    **options) -> EstimatorStats:
  """Runs ``estimator`` ``num_runs`` times and compares with the exact answer.

  The runs are vectorized: the logits are replicated along a new leading
  batch axis of size ``num_runs``, so one call of the estimator gives
  ``num_runs`` independent estimates. ``objective`` must therefore accept an
  extra batch axis (``[S, num_runs, *batch, *event]``), as any objective that
  reduces only over the event axes does.

  Args:
    objective, logits: the problem.
    estimator: estimator name of ``family``.
    family: "bernoulli" or "categorical".
    num_runs: number of independent estimates.
    num_samples: passed to the estimator.
    seed: int or stateless seed for the whole batch of runs.
    bound_samples: K of the exact bound the estimator targets (1 for E_q[f];
      VIMCO with K samples: K; local DisARM with 2P samples: P).
    **options: estimator options.

  Returns:
    An :class:`EstimatorStats`.
  """
  family = get_family(family)
  logits = tf.convert_to_tensor(logits)
  exact_value, exact_grad = exact_value_and_gradient(
      objective, logits, family, bound_samples)
  module = importlib.import_module(f"tf_discrete.{family.name}")
  replicated = tf.broadcast_to(logits, [num_runs] + logits.shape.as_list())
  with tf.GradientTape() as tape:
    tape.watch(replicated)
    values = module.estimate(objective, replicated, estimator,
                             num_samples=num_samples, seed=seed, **options)
    total = tf.reduce_sum(values)
  grads = tape.gradient(total, replicated).numpy()
  values = values.numpy()
  value_mean, value_var = values.mean(0), values.var(0, ddof=1)
  grad_mean, grad_var = grads.mean(0), grads.var(0, ddof=1)
  exact_value, exact_grad = exact_value.numpy(), exact_grad.numpy()
  return EstimatorStats(
      value_mean=value_mean, value_var=value_var,
      grad_mean=grad_mean, grad_var=grad_var,
      exact_value=exact_value, exact_grad=exact_grad,
      value_z=_z_score(value_mean, value_var, exact_value, num_runs),
      grad_z=_z_score(grad_mean, grad_var, exact_grad, num_runs),
      num_runs=num_runs)
