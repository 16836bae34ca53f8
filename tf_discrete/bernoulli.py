r"""Gradient estimators for factorized Bernoulli latents.

Notation: logits :math:`\theta \in \mathbb{R}^{D}` (per batch element),
:math:`b_d \sim \mathrm{Bernoulli}(\sigma(\theta_d))`, objective
:math:`f(b)`, target :math:`\nabla_\theta \mathbb{E}_{q_\theta}[f(b)]`. Every
estimator below returns, per unit, an estimate of that gradient with
:math:`f` held constant (the *score part*); a direct dependence of ``f`` on
the logits is differentiated pathwise on top (see
:func:`tf_discrete.bernoulli.estimate`).

All estimators draw uniforms :math:`u \sim U(0,1)` statelessly, one per
(sample, batch element, unit), and evaluate the objective once on all
samples stacked on a leading axis.

+------------------+-------------+----------+-----------------------------+
| name             | evaluations | unbiased | paper                       |
+==================+=============+==========+=============================+
| ``reinforce``    | K (def. 1)  | yes      | Williams 1992               |
| ``rloo``         | K >= 2      | yes      | Kool et al. 2019            |
| ``ar``           | K (def. 1)  | yes      | Yin & Zhou 2019             |
| ``arm``          | 2P (def. 2) | yes      | Yin & Zhou 2019             |
| ``disarm``       | 2P (def. 2) | yes      | Dong, Mnih, Tucker 2020     |
| ``vimco``        | K >= 2      | yes [1]_ | Mnih & Rezende 2016         |
| ``local_disarm`` | 2P (def. 2) | yes [1]_ | Dong, Mnih, Tucker 2020     |
+------------------+-------------+----------+-----------------------------+

.. [1] for the gradient of the multi-sample bound
   :math:`\mathbb{E}[\log \frac1K \sum_k e^{f(b_k)}]`, not of
   :math:`\mathbb{E}[f]`.
"""

import tensorflow as tf

from tf_discrete import _core

REGISTRY = _core.Registry("bernoulli")


def _log_prob(samples, logits):
  """log q(b) = sum_d [b_d log sigma(theta_d) + (1-b_d) log sigma(-theta_d)].

  Written as ``-softplus(-(2b-1) theta)`` so it stays finite for |theta| up to
  the dtype's range.
  """
  signs = 2.0 * tf.cast(samples, logits.dtype) - 1.0
  return -tf.reduce_sum(_core.softplus(-signs * logits), axis=-1)


def _enumerate_states(event_shape):
  """All 2^D binary vectors, ``[2^D, D]``, in binary counting order."""
  (num_units,) = event_shape
  codes = tf.range(2**num_units)[:, tf.newaxis]
  bits = tf.bitwise.right_shift(codes, tf.range(num_units)[tf.newaxis])
  return tf.cast(tf.bitwise.bitwise_and(bits, 1), tf.float32)


FAMILY = _core.Family(
    name="bernoulli",
    event_rank=1,
    event_desc="[*batch, D]",
    registry=REGISTRY,
    log_prob=_log_prob,
    enumerate_states=_enumerate_states,
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
      (``reinforce``, ``rloo``, ``ar``, ``vimco``: K; ``arm``, ``disarm``,
      ``local_disarm``: an even number, S/2 antithetic pairs). ``None`` uses
      the estimator's default.
    seed: ``None`` (fresh randomness) or a stateless seed ``int[2]`` / int.
    **options: estimator-specific options (none for this family yet).

  Returns:
    ``[*batch]`` estimate of :math:`\mathbb{E}_q[f]` (``vimco``,
    ``local_disarm``: of the multi-sample bound). Its gradient w.r.t.
    ``logits`` is the estimator's; its gradient w.r.t. anything ``objective``
    uses (decoder weights, a prior, the logits themselves in a
    :math:`-\log q` term) is the ordinary pathwise gradient of the estimate.

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
  return _threshold(_core.uniform(shape, seed, logits.dtype), logits)


def _threshold(u, logits):
  """b = 1[u < sigma(theta)]."""
  return tf.cast(u < tf.sigmoid(logits), logits.dtype)


def _score(samples, logits):
  r""":math:`\nabla_\theta \log q(b) = b - \sigma(\theta)`."""
  return samples - tf.sigmoid(logits)


# --------------------------------------------------------------------------
# Sampling schemes.
# --------------------------------------------------------------------------


class _IndependentSamples(_core.Estimator):
  """K independent samples b_k = 1[u_k < sigma(theta)]."""

  def sample(self, logits, num_samples, seed):
    shape = tf.concat([[num_samples], tf.shape(logits)], 0)
    u = _core.uniform(shape, seed, logits.dtype)
    return _core.Draw(_threshold(u, logits), {"u": u})


class _AntitheticPairs(_core.Estimator):
  r"""P = S/2 antithetic pairs from one uniform per pair and unit.

  :math:`b^{(1)} = 1[u > \sigma(-\theta)]`, :math:`b^{(2)} = 1[u <
  \sigma(\theta)]`; both are marginally Bernoulli(:math:`\sigma(\theta)`).
  Samples are stacked as ``[b1 of pairs 1..P, b2 of pairs 1..P]``.
  """
  default_num_samples = 2
  min_num_samples = 2
  even_num_samples = True

  def sample(self, logits, num_samples, seed):
    shape = tf.concat([[num_samples // 2], tf.shape(logits)], 0)
    u = _core.uniform(shape, seed, logits.dtype)
    first = tf.cast(u > tf.sigmoid(-logits), logits.dtype)
    second = _threshold(u, logits)
    return _core.Draw(tf.concat([first, second], 0),
                      {"u": u, "first": first, "second": second})


def _disarm_weight(draw, logits):
  r""":math:`\tfrac12 1[b^{(1)} \neq b^{(2)}] (-1)^{b^{(2)}} \sigma(|\theta|)`."""
  disagree = tf.cast(
      tf.not_equal(draw.noise["first"], draw.noise["second"]), logits.dtype)
  sign = 1.0 - 2.0 * draw.noise["second"]
  return 0.5 * disagree * sign * tf.sigmoid(tf.abs(logits))


def _pair_values(values):
  """Splits ``[2P, *batch]`` values into pair members, each ``[P, *batch, 1]``."""
  first, second = tf.split(values, 2, axis=0)
  return first[..., tf.newaxis], second[..., tf.newaxis]


# --------------------------------------------------------------------------
# Single-sample-bound estimators.
# --------------------------------------------------------------------------


@REGISTRY.register
class Reinforce(_IndependentSamples):
  r"""REINFORCE / score function, no baseline.

  .. math:: \hat g = \frac1K \sum_k f(b_k)\,(b_k - \sigma(\theta))

  Cost: K evaluations (default 1). Unbiased; high variance (no control
  variate). Williams, "Simple statistical gradient-following algorithms for
  connectionist reinforcement learning", Machine Learning 1992.
  """
  name = "reinforce"

  def gradient(self, values, draw, logits):
    return tf.reduce_mean(
        values[..., tf.newaxis] * _score(draw.samples, logits), axis=0)


@REGISTRY.register
class ReinforceLeaveOneOut(_IndependentSamples):
  r"""REINFORCE with the leave-one-out baseline (RLOO; VarGrad).

  .. math:: \hat g = \frac1K \sum_k \Big(f(b_k) - \frac{1}{K-1}\sum_{j\neq k}
     f(b_j)\Big)(b_k - \sigma(\theta))

  Cost: K >= 2 evaluations (default 2). Unbiased (the baseline of sample k
  is independent of b_k). Kool, van Hoof, Welling, "Buy 4 REINFORCE samples,
  get a baseline for free!", ICLR DeepRLStructPred workshop 2019; identical
  to VarGrad (Richter et al., 2020).
  """
  name = "rloo"
  default_num_samples = 2
  min_num_samples = 2

  def gradient(self, values, draw, logits):
    signal = values - _core.leave_one_out_mean(values)
    return tf.reduce_mean(
        signal[..., tf.newaxis] * _score(draw.samples, logits), axis=0)


@REGISTRY.register
class AugmentReinforce(_IndependentSamples):
  r"""Augment-REINFORCE (AR).

  .. math:: \hat g = \frac1K \sum_k f(1[u_k < \sigma(\theta)])\,(1 - 2u_k)

  Cost: K evaluations (default 1). Unbiased; usually higher variance than
  REINFORCE. Yin & Zhou, "ARM: Augment-REINFORCE-merge gradient for
  stochastic binary networks", ICLR 2019.
  """
  name = "ar"

  def gradient(self, values, draw, logits):
    return tf.reduce_mean(
        values[..., tf.newaxis] * (1.0 - 2.0 * draw.noise["u"]), axis=0)


@REGISTRY.register
class AugmentReinforceMerge(_AntitheticPairs):
  r"""Augment-REINFORCE-merge (ARM).

  .. math:: \hat g = \frac1P \sum_p \big(f(b^{(1)}_p) - f(b^{(2)}_p)\big)
     (u_p - \tfrac12)

  with the antithetic pair :math:`b^{(1)} = 1[u > \sigma(-\theta)]`,
  :math:`b^{(2)} = 1[u < \sigma(\theta)]`. Cost: 2P evaluations (default 2).
  Unbiased. Yin & Zhou, ICLR 2019.
  """
  name = "arm"

  def gradient(self, values, draw, logits):
    first, second = _pair_values(values)
    return tf.reduce_mean((first - second) * (draw.noise["u"] - 0.5), axis=0)


@REGISTRY.register
class DisARM(_AntitheticPairs):
  r"""DisARM: ARM with the augmentation integrated out.

  .. math:: \hat g = \frac1P \sum_p \tfrac12 \big(f(b^{(1)}_p) -
     f(b^{(2)}_p)\big)\, 1[b^{(1)}_p \neq b^{(2)}_p]\,(-1)^{b^{(2)}_p}\,
     \sigma(|\theta|)

  Same pairs and cost as ARM (2P evaluations, default 2). Unbiased, and
  Var(DisARM) <= Var(ARM) (it is ARM Rao-Blackwellized over u given the
  pair). Dong, Mnih, Tucker, "DisARM: An antithetic gradient estimator for
  binary latent variables", NeurIPS 2020.
  """
  name = "disarm"

  def gradient(self, values, draw, logits):
    first, second = _pair_values(values)
    return tf.reduce_mean((first - second) * _disarm_weight(draw, logits),
                          axis=0)


# --------------------------------------------------------------------------
# Multi-sample-bound estimators.
# --------------------------------------------------------------------------


@REGISTRY.register
class VIMCO(_IndependentSamples):
  r"""VIMCO for the K-sample bound :math:`L = \log \frac1K \sum_k e^{f(b_k)}`.

  .. math:: \hat g = \sum_k \big(L - L^{(-k)}\big)(b_k - \sigma(\theta)),
     \quad L^{(-k)} = \log \frac1K\Big(\sum_{j\neq k} e^{f_j} +
     e^{\frac{1}{K-1}\sum_{j \neq k} f_j}\Big)

  The returned value is L, so the direct path of the bound (importance
  weights times the pathwise gradient of f) is added by backprop. Cost: K >=
  2 evaluations (default 2). Unbiased for the gradient of E[L]. Mnih &
  Rezende, "Variational inference for Monte Carlo objectives", ICML 2016.
  """
  name = "vimco"
  default_num_samples = 2
  min_num_samples = 2

  def value(self, values, draw):
    return _core.log_mean_exp(values)

  def gradient(self, values, draw, logits):
    signal = (_core.log_mean_exp(values)[tf.newaxis] -
              _core.leave_one_out_log_mean_exp(values))
    return tf.reduce_sum(
        signal[..., tf.newaxis] * _score(draw.samples, logits), axis=0)


@REGISTRY.register
class LocalDisARM(_AntitheticPairs):
  r"""Local DisARM for the P-sample bound over the first pair members.

  With P antithetic pairs, :math:`L = \log \frac1P \sum_p e^{f(b^{(1)}_p)}`
  and :math:`L_p'` the same bound with :math:`b^{(1)}_p` replaced by its
  partner :math:`b^{(2)}_p`:

  .. math:: \hat g = \sum_p \tfrac12 (L - L_p')\, 1[b^{(1)}_p \neq
     b^{(2)}_p]\,(-1)^{b^{(2)}_p}\,\sigma(|\theta|)

  i.e. DisARM applied to each sample of the bound with the others held
  fixed. The returned value is L (direct path by backprop). Cost: 2P
  evaluations (``num_samples`` = 2P, default 2; P = 1 reduces to DisARM).
  Unbiased for the gradient of E[L]. Dong, Mnih, Tucker, NeurIPS 2020, §4.
  """
  name = "local_disarm"

  def value(self, values, draw):
    first, _ = tf.split(values, 2, axis=0)
    return _core.log_mean_exp(first)

  def gradient(self, values, draw, logits):
    first, second = tf.split(values, 2, axis=0)
    bound = _core.log_mean_exp(first)
    # Row p: the bound with first member p swapped for its partner.
    swapped = _core.replace_each(first, second)
    signal = bound[tf.newaxis] - _core.log_mean_exp(swapped, axis=1)
    # _disarm_weight includes the 1/2; per-pair terms are summed, not averaged.
    return tf.reduce_sum(signal[..., tf.newaxis] * _disarm_weight(draw, logits),
                         axis=0)
