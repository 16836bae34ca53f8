r"""Gradient estimators for factorized Bernoulli latents.

Notation: logits :math:`\theta \in \mathbb{R}^{D}` (per batch element),
:math:`b_d \sim \mathrm{Bernoulli}(\sigma(\theta_d))`, objective
:math:`f(b)`, target :math:`\nabla_\theta \mathbb{E}_{q_\theta}[f(b)]`. Every
estimator returns, per unit, an estimate of that gradient with :math:`f`
held constant (the *score part*); a direct dependence of ``f`` on the logits
is differentiated pathwise on top (see :func:`estimate`).

All estimators draw uniforms :math:`u \sim U(0,1)` statelessly, one per
(sample, batch element, unit), and evaluate the objective once on all
samples stacked on a leading axis.

Each estimator's cost, target (:math:`\mathbb{E}_q[f]` or the multi-sample
bound), bias, options and paper are declared once, in its ``facts``
(:class:`tf_discrete.Facts`): ``get(name).facts``, or the whole table with
``tf_discrete.diagnostics.estimator_table("bernoulli")``. The formula of
each is in its class docstring (``help(get(name))``).

Module layout: :mod:`._common` (registry, log-probability, the independent
sampling scheme), :mod:`.score_function` (REINFORCE, RLOO, VIMCO),
:mod:`.augment` (AR and the antithetic ARM, DisARM, local DisARM).
"""

import tensorflow as tf

from tf_discrete import _core
from tf_discrete.bernoulli import _common
from tf_discrete.bernoulli import augment  # Registers its estimators.
from tf_discrete.bernoulli import control_variates  # Registers its estimators.
from tf_discrete.bernoulli import multisample  # Registers its estimators.
from tf_discrete.bernoulli import relaxation  # Registers its estimators.
from tf_discrete.bernoulli import score_function  # Registers its estimators.
from tf_discrete.bernoulli._common import REGISTRY

__all__ = ["FAMILY", "REGISTRY", "available", "estimate", "get", "sample"]

FAMILY = _core.Family(
    name="bernoulli",
    event_rank=1,
    event_desc="[*batch, D]",
    registry=REGISTRY,
    log_prob=_common.log_prob,
    enumerate_states=_common.enumerate_states,
)


def estimate(objective, logits, estimator="disarm", num_samples=None,
             seed=None, **options):
  r"""Estimates :math:`\mathbb{E}_{b \sim \mathrm{Bern}(\sigma(\theta))}[f(b)]` with a gradient.

  Args:
    objective: callable mapping samples ``[S, *batch, D]`` (0./1. in the
      logits' dtype) to values ``[S, *batch]``. Called exactly once.
    logits: ``[*batch, D]`` floating tensor, :math:`\theta`.
    estimator: a name from :func:`available`.
    num_samples: objective evaluations S where the estimator allows a choice
      (``get(estimator).facts.cost``: ``reinforce``, ``rloo``, ``ar``,
      ``vimco``: K; ``arm``, ``disarm``, ``local_disarm``: an even number,
      S/2 antithetic pairs). ``None`` uses the estimator's default.
    seed: ``None`` (fresh randomness) or a stateless seed ``int[2]`` / int.
    **options: estimator-specific options (``get(estimator).facts.options``;
      none for this family yet).

  Returns:
    ``[*batch]`` estimate of :math:`\mathbb{E}_q[f]` (``vimco``,
    ``local_disarm``: of the multi-sample bound; ``facts.estimates``). Its
    gradient w.r.t. ``logits`` is the estimator's; its gradient w.r.t.
    anything ``objective`` uses (decoder weights, a prior, the logits
    themselves in a :math:`-\log q` term) is the ordinary pathwise gradient
    of the estimate.

  For an ELBO :math:`f = \log p(x,b) - \log q(b)`, stop the gradient through
  the :math:`\log q` term: its pathwise gradient has expectation zero
  (:math:`\mathbb{E}_q[\nabla \log q] = 0`) and only adds variance. For the
  multi-sample bound (``vimco``, ``local_disarm``) keep it: there the direct
  path is part of the gradient.
  """
  return _core.run_estimator(FAMILY, objective, logits, estimator,
                             num_samples, seed, options)


# Sorted estimator names, and the estimator object registered under a name.
available = REGISTRY.names
get = REGISTRY.get


def sample(logits, seed=None, num_samples=None):
  """Draws Bernoulli(sigmoid(logits)) samples (no gradient).

  Returns ``[*batch, D]`` if ``num_samples`` is None, else
  ``[num_samples, *batch, D]``.
  """
  logits = _core.convert_logits(logits, FAMILY.event_rank, FAMILY.event_desc)
  seed = _core.resolve_seed(seed)
  shape = tf.shape(logits)
  if num_samples is not None:
    shape = tf.concat([[num_samples], shape], 0)
  return _common.threshold(_core.uniform(shape, seed, logits.dtype), logits)
