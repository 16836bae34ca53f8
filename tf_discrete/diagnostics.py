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

:func:`estimator_table` renders a family's registry as a markdown table
from the estimators' facts; :func:`update_readme` writes those tables into
the marked blocks of README.md (a test keeps them in sync).
"""

import dataclasses
import importlib
import itertools
import pathlib
import re

from typing import Callable, Dict, Optional

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

  @property
  def relative_bias(self) -> float:
    """|mean gradient - exact| / |exact| (norms over all coordinates)."""
    return float(np.linalg.norm(self.grad_mean - self.exact_grad) /
                 np.linalg.norm(self.exact_grad))

  @property
  def relative_noise(self) -> float:
    """What :attr:`relative_bias` would be from Monte Carlo noise alone:
    sqrt(sum of the mean's variances) / |exact|."""
    return float(np.sqrt(np.sum(self.grad_var) / self.num_runs) /
                 np.linalg.norm(self.exact_grad))


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


# --------------------------------------------------------------------------
# Estimator tables, generated from the facts.
# --------------------------------------------------------------------------

#: Families whose tables README.md carries.
# --------------------------------------------------------------------------
# Shared test problems: small enough to enumerate, non-linear, with rare
# states (logits up to +-6 / +-4), used by the unbiasedness tests and the
# variance table of experiments.estimator_variance.


@dataclasses.dataclass(frozen=True)
class TestProblem:
  """An objective and logits whose exact gradient is cheap to enumerate."""
  family: str
  logits: np.ndarray
  objective: Callable[[tf.Tensor], tf.Tensor]
  description: str

  __test__ = False  # Not a pytest test class.


_BERNOULLI_LOGITS = np.array([0.3, -1.2, 6.0, -6.0, 2.0], np.float32)
_INTERACTIONS = np.random.RandomState(0).randn(5, 5).astype(np.float32)
_WEIGHTS = np.array([1.0, -2.0, 0.5, 3.0, -1.0], np.float32)


def interaction_objective(b):
  """sum(a*b) + b'Wb + sin(2 sum b) over the first D <= 5 units."""
  d = b.shape[-1]
  return (tf.reduce_sum(b * _WEIGHTS[:d], -1)
          + tf.einsum("...i,ij,...j->...", b, _INTERACTIONS[:d, :d], b)
          + tf.sin(2.0 * tf.reduce_sum(b, -1)))


BERNOULLI_PROBLEM = TestProblem(
    "bernoulli", _BERNOULLI_LOGITS, interaction_objective,
    "5 units, logits (0.3, -1.2, 6, -6, 2), linear + pairwise interactions "
    "+ sin(2 sum b)")

_CATEGORICAL_LOGITS = np.array([[0.5, -1.0, 4.0, -4.0], [-4.0, 1.5, 0.0, 3.0]],
                               np.float32)
_RS = np.random.RandomState(0)
_COUPLING = (0.7 * _RS.randn(4, 4)).astype(np.float32)
_A0 = np.array([1.0, -0.5, 0.3, 0.8], np.float32)
_A1 = np.array([-0.7, 0.4, 1.1, -0.2], np.float32)


def coupled_objective(z):
  """Two variables of C <= 4 categories, coupled; |f| < 4 on every state."""
  c = z.shape[-1]
  z0, z1 = z[..., 0, :], z[..., 1, :]
  return (tf.reduce_sum(z0 * _A0[:c], -1) + tf.reduce_sum(z1 * _A1[:c], -1)
          + tf.einsum("...i,ij,...j->...", z0, _COUPLING[:c, :c], z1)
          + tf.sin(2.0 * tf.reduce_sum(
              z0 * z1 * np.arange(c, dtype=np.float32), -1)))


def categorical_problem(num_categories: int = 4) -> TestProblem:
  """V = 2 variables of C in {2, 3, 4} categories, logits up to +-4."""
  if not 2 <= num_categories <= 4:
    raise ValueError(f"`num_categories` must be 2, 3 or 4, got "
                     f"{num_categories}.")
  return TestProblem(
      "categorical", _CATEGORICAL_LOGITS[:, :num_categories], coupled_objective,
      f"2 variables x {num_categories} categories, coupled non-linear")


FAMILIES = ("bernoulli", "categorical")

#: Shell command that rewrites README.md's estimator tables.
UPDATE_README_COMMAND = (
    ".venv/bin/python -c 'from tf_discrete import diagnostics; "
    "diagnostics.update_readme(\"README.md\")'")

_COLUMNS = ("estimator", "estimates", "objective evaluations", "unbiased",
            "needs ∇f", "trainable state", "options", "paper")


def _yes_no(flag: bool) -> str:
  return "yes" if flag else "no"


def estimator_table(family) -> str:
  """Markdown table of ``family``'s estimators, one row per registry name.

  Columns: name, what it estimates, objective evaluations
  (``facts.cost.describe()``), unbiased, needs the objective's gradient,
  trainable state, options (``name=default``), paper. Every cell comes from
  the estimator's :class:`~tf_discrete.facts.Facts`.
  """
  family = get_family(family)
  lines = ["| " + " | ".join(_COLUMNS) + " |",
           "|" + "---|" * len(_COLUMNS)]
  for name, estimator in family.registry.items():
    facts = estimator.facts
    options = ", ".join(f"`{o.describe()}`" for o in facts.options)
    cells = (f"`{name}`", facts.estimates.description, facts.cost.describe(),
             _yes_no(facts.unbiased), _yes_no(facts.needs_objective_gradient),
             _yes_no(facts.trainable_state), options, facts.paper)
    lines.append("|" + "|".join(f" {c} " if c else " " for c in cells) + "|")
  return "\n".join(lines) + "\n"


def _block_pattern(family: str) -> "re.Pattern":
  return re.compile(
      rf"(^<!-- estimators:{family} -->\n)(.*?)(^<!-- /estimators:{family} -->$)",
      re.S | re.M)


def readme_tables(text: str) -> Dict[str, Optional[str]]:
  """The estimator tables currently in a README's text, by family.

  A table is what lies between the lines ``<!-- estimators:FAMILY -->`` and
  ``<!-- /estimators:FAMILY -->``; None for a family without such a block.
  """
  found = {}
  for family in FAMILIES:
    match = _block_pattern(family).search(text)
    found[family] = None if match is None else match.group(2)
  return found


def render_readme(text: str) -> str:
  """``text`` with every marked estimator table regenerated."""
  for family in FAMILIES:
    table = estimator_table(family)
    text = _block_pattern(family).sub(
        lambda m, table=table: m.group(1) + table + m.group(3), text)
  return text


def update_readme(path="README.md") -> bool:
  """Regenerates the marked estimator tables of ``path`` in place.

  Returns:
    Whether the file changed.

  Raises:
    ValueError: a family's markers are missing.
  """
  path = pathlib.Path(path)
  text = path.read_text(encoding="utf-8")
  missing = [f for f, t in readme_tables(text).items() if t is None]
  if missing:
    raise ValueError(
        f"{path} has no estimator block for {missing}: add the lines "
        f"'<!-- estimators:FAMILY -->' and '<!-- /estimators:FAMILY -->'.")
  new = render_readme(text)
  if new != text:
    path.write_text(new, encoding="utf-8")
  return new != text
