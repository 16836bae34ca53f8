r"""Gradient estimators for independent categorical latents.

Notation: logits :math:`\theta` of shape ``[*batch, V, C]``: V independent
variables, each :math:`z_v \sim \mathrm{Cat}(\mathrm{softmax}\,\theta_v)`
over C categories. The objective f sees one-hot samples ``[S, *batch, V,
C]`` (S = objective evaluations, one batched call) and returns ``[S,
*batch]``. Every estimator returns an estimate of
:math:`\mathbb{E}_q[f(z)]` with its gradient w.r.t. the logits attached
(f held constant); a direct dependence of f on the logits is differentiated
pathwise on top (see :func:`estimate`).

Each estimator's cost, target, bias, options and paper are declared once,
in its ``facts`` (:class:`tf_discrete.Facts`): ``get(name).facts``, or the
whole table with ``tf_discrete.diagnostics.estimator_table("categorical")``.
The formula of each is in its class docstring (``help(get(name))``).

Module layout: :mod:`._common` (registry, noise, the independent sampling
scheme, shape tools), :mod:`.score_function` (REINFORCE, RLOO),
:mod:`.arsm` (AR, ARS, ARSM, ARS+, ARSM+), :mod:`.coupled` (DisARM-SB,
-Tree, -IW), :mod:`.control_variates` (REBAR, RELAX: learned control
variates with trainable state).
"""

import itertools

import numpy as np
import tensorflow as tf

from tf_discrete import _core
from tf_discrete.categorical import _common
from tf_discrete.categorical import arsm  # Registers its estimators.
from tf_discrete.categorical import control_variates  # Registers rebar, relax.
from tf_discrete.categorical import coupled  # Registers its estimators.
from tf_discrete.categorical import multisample  # Registers its estimators.
from tf_discrete.categorical import relaxation  # Registers its estimators.
from tf_discrete.categorical import score_function  # Registers its estimators.
from tf_discrete.categorical._common import REGISTRY

__all__ = ["FAMILY", "REGISTRY", "available", "estimate", "get", "sample"]


def _log_prob(samples, logits):
  """log q(z) = sum_v sum_c onehot(z_v)_c log softmax(theta_v)_c."""
  samples = tf.cast(samples, logits.dtype)
  return tf.reduce_sum(samples * tf.nn.log_softmax(logits, axis=-1),
                       axis=[-2, -1])


def _enumerate_states(event_shape):
  """All C^V one-hot states ``[C^V, V, C]``, variable 0 varying slowest."""
  num_variables, num_categories = event_shape
  index = np.array(
      list(itertools.product(range(num_categories), repeat=num_variables)),
      np.int32).reshape([-1, num_variables])
  return tf.one_hot(index, num_categories, dtype=tf.float32)


FAMILY = _core.Family(
    name="categorical",
    event_rank=2,
    event_desc="[*batch, V, C]",
    registry=REGISTRY,
    log_prob=_log_prob,
    enumerate_states=_enumerate_states,
)


def _check_categories(logits):
  num_categories = logits.shape[-1]
  if num_categories is not None and num_categories < 2:
    raise ValueError(
        f"`logits` must have at least 2 categories on the last axis "
        f"([*batch, V, C] with C >= 2), got shape {logits.shape}.")


def estimate(objective, logits, estimator="rloo", num_samples=None,
             seed=None, **options):
  r"""Estimates :math:`\mathbb{E}_{z \sim \mathrm{Cat}(\mathrm{softmax}\,\theta)}[f(z)]` with a gradient.

  Args:
    objective: callable mapping one-hot samples ``[S, *batch, V, C]`` (in
      the logits' dtype) to values ``[S, *batch]``. Called exactly once.
    logits: ``[*batch, V, C]`` floating tensor :math:`\theta` (softmax over
      the last axis), C >= 2.
    estimator: a name from :func:`available`.
    num_samples: objective evaluations S where the estimator allows a
      choice (``get(estimator).facts.cost``): ``reinforce``, ``ar`` (K,
      default 1), ``rloo`` (K >= 2, default C), ``disarm_sb``,
      ``disarm_tree``, ``disarm_iw`` (even, S/2 antithetic pairs, default
      2), ``rebar``, ``relax`` (S >= 3, default 3). ``ars``, ``ars_plus``
      (C) and ``arsm``, ``arsm_plus`` (C(C-1)/2 + 1) have a fixed cost;
      pass None or that number.
    seed: None (fresh randomness) or a stateless seed ``int[2]`` / int.
    **options: the estimator's options (``get(estimator).facts.options``,
      with accepted values and defaults): ``logits_order`` for
      ``disarm_sb`` and ``disarm_iw``, ``symmetry_mask`` for ``ars_plus``
      and ``arsm_plus``, ``control_variate`` (the trainable state from
      ``get(name).make_state([V, C])``) for ``rebar`` and ``relax``.

  Returns:
    ``[*batch]`` estimate of :math:`\mathbb{E}_q[f]` (the mean of f over
    the S samples, each marginally distributed as q). Its gradient w.r.t.
    ``logits`` is the estimator's; its gradient w.r.t. anything
    ``objective`` uses (decoder weights, a prior, the logits themselves in
    a :math:`-\log q` term) is the ordinary pathwise gradient.

  Raises:
    ValueError / TypeError naming the argument: unknown ``estimator``,
    ``logits`` of rank < 2, integer dtype or C < 2, ``objective`` output not
    ``[S, *batch]``, invalid ``num_samples``, ``disarm_tree`` with C not a
    power of 2, invalid ``logits_order`` / unknown options.

  For an ELBO :math:`f = \log p(x,z) - \log q(z)`, stop the gradient through
  :math:`\log q`: its pathwise gradient has expectation zero
  (:math:`\mathbb{E}_q[\nabla\log q] = 0`) and only adds variance.
  """
  converted = _core.convert_logits(logits, FAMILY.event_rank,
                                   FAMILY.event_desc)
  _check_categories(converted)
  return _core.run_estimator(FAMILY, objective, converted, estimator,
                             num_samples, seed, options)


# Sorted estimator names, and the estimator object registered under a name.
available = REGISTRY.names
get = REGISTRY.get


def sample(logits, seed=None, num_samples=None):
  """Draws one-hot ``Categorical(softmax(logits))`` samples (no gradient).

  Returns ``[*batch, V, C]`` in the logits' dtype if ``num_samples`` is
  None, else ``[num_samples, *batch, V, C]``.
  """
  logits = _core.convert_logits(logits, FAMILY.event_rank, FAMILY.event_desc)
  _check_categories(logits)
  seed = _core.resolve_seed(seed)
  theta = _common.to_work(tf.stop_gradient(logits))
  shape = tf.shape(theta)
  if num_samples is not None:
    shape = tf.concat([[num_samples], shape], 0)
  log_e = _common.log_exponential(shape, seed, theta.dtype)
  index = _common.exponential_race(log_e, theta)
  return _common.one_hot(index, _common.num_categories(logits), logits.dtype)
