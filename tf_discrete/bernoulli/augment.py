r"""The augment-REINFORCE family for Bernoulli latents: AR, ARM, DisARM,
local ARM, local DisARM.

AR uses K independent samples with their uniforms; the others use P = S/2
antithetic pairs drawn from one uniform per pair and unit
(:class:`AntitheticPairs`). Yin & Zhou, "ARM: Augment-REINFORCE-merge
gradient for stochastic binary networks", ICLR 2019; Dong, Mnih, Tucker,
"DisARM: An antithetic gradient estimator for binary latent variables",
NeurIPS 2020.
"""

import dataclasses

import tensorflow as tf

from tf_discrete import _core
from tf_discrete.bernoulli import _common
from tf_discrete.bernoulli._common import REGISTRY
from tf_discrete.facts import Cost
from tf_discrete.facts import Estimates
from tf_discrete.facts import Facts
from tf_discrete.facts import Option

#: Cost of the antithetic estimators: 2P evaluations, one pair by default.
PAIRS = Cost(default=2, minimum=2, multiple=2, per="pair")


# --------------------------------------------------------------------------
# The antithetic sampling scheme.
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AntitheticNoise:
  r"""Noise of P antithetic pairs.

  Attributes:
    u: ``[P, *batch, D]`` uniforms, one per pair and unit.
    first: ``[P, *batch, D]``, :math:`b^{(1)} = 1[u > \sigma(-\theta)]`.
    second: ``[P, *batch, D]``, :math:`b^{(2)} = 1[u < \sigma(\theta)]`.
  """
  u: tf.Tensor
  first: tf.Tensor
  second: tf.Tensor


class AntitheticPairs(_core.Estimator):
  r"""P = S/2 antithetic pairs from one uniform per pair and unit.

  :math:`b^{(1)} = 1[u > \sigma(-\theta)]`, :math:`b^{(2)} = 1[u <
  \sigma(\theta)]`; both are marginally Bernoulli(:math:`\sigma(\theta)`).
  Samples are stacked as ``[b1 of pairs 1..P, b2 of pairs 1..P]``.
  """

  def sample(self, logits, num_samples, seed, **options
             ) -> _core.Draw[AntitheticNoise]:
    del options  # The scheme has none; subclasses may.
    shape = tf.concat([[num_samples // 2], tf.shape(logits)], 0)
    u = _core.uniform(shape, seed, logits.dtype)
    first = tf.cast(u > tf.sigmoid(-logits), logits.dtype)
    second = _common.threshold(u, logits)
    return _core.Draw(tf.concat([first, second], 0),
                      AntitheticNoise(u=u, first=first, second=second))


def _disarm_weight(noise: AntitheticNoise, logits):
  r""":math:`\tfrac12 1[b^{(1)} \neq b^{(2)}] (-1)^{b^{(2)}} \sigma(|\theta|)`."""
  disagree = tf.cast(tf.not_equal(noise.first, noise.second), logits.dtype)
  sign = 1.0 - 2.0 * noise.second
  return 0.5 * disagree * sign * tf.sigmoid(tf.abs(logits))


def _pair_values(values):
  """Splits ``[2P, *batch]`` values into pair members, each ``[P, *batch, 1]``."""
  first, second = tf.split(values, 2, axis=0)
  return first[..., tf.newaxis], second[..., tf.newaxis]


# --------------------------------------------------------------------------
# Estimators of E_q[f].
# --------------------------------------------------------------------------


@REGISTRY.register
class AugmentReinforce(_common.IndependentSamples):
  r"""Augment-REINFORCE (AR).

  .. math:: \hat g = \frac1K \sum_k f(1[u_k < \sigma(\theta)])\,(1 - 2u_k)

  Cost: K evaluations (default 1). Unbiased; usually higher variance than
  REINFORCE. Yin & Zhou, "ARM: Augment-REINFORCE-merge gradient for
  stochastic binary networks", ICLR 2019.
  """
  name = "ar"
  facts = Facts(estimates=Estimates.MEAN, cost=Cost(default=1),
                unbiased=True, paper="Yin & Zhou 2019")

  def gradient(self, values, draw, logits):
    return tf.reduce_mean(
        values[..., tf.newaxis] * (1.0 - 2.0 * draw.noise.u), axis=0)


@REGISTRY.register
class AugmentReinforceMerge(AntitheticPairs):
  r"""Augment-REINFORCE-merge (ARM).

  .. math:: \hat g = \frac1P \sum_p \big(f(b^{(1)}_p) - f(b^{(2)}_p)\big)
     (u_p - \tfrac12)

  with the antithetic pair :math:`b^{(1)} = 1[u > \sigma(-\theta)]`,
  :math:`b^{(2)} = 1[u < \sigma(\theta)]`. Cost: 2P evaluations (default 2).
  Unbiased. Yin & Zhou, ICLR 2019.
  """
  name = "arm"
  facts = Facts(estimates=Estimates.MEAN, cost=PAIRS, unbiased=True,
                paper="Yin & Zhou 2019")

  def gradient(self, values, draw, logits):
    first, second = _pair_values(values)
    return tf.reduce_mean((first - second) * (draw.noise.u - 0.5), axis=0)


@REGISTRY.register
class DisARM(AntitheticPairs):
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
  facts = Facts(estimates=Estimates.MEAN, cost=PAIRS, unbiased=True,
                paper="Dong, Mnih, Tucker 2020")

  def gradient(self, values, draw, logits):
    first, second = _pair_values(values)
    return tf.reduce_mean(
        (first - second) * _disarm_weight(draw.noise, logits), axis=0)


# --------------------------------------------------------------------------
# Estimators of the multi-sample bound.
# --------------------------------------------------------------------------


def _local_signals(base, partners):
  r"""Local learning signals of a multi-sample bound.

  Args:
    base, partners: ``[P, *batch]`` values of the bound's samples and of
      their antithetic partners.

  Returns:
    ``(L, signal)``: the bound :math:`L = \log\frac1P\sum_p e^{base_p}`
    ``[*batch]`` and :math:`L - L'_p` ``[P, *batch]``, where :math:`L'_p`
    is L with term p replaced by its partner.
  """
  bound = _core.log_mean_exp(base)
  swapped = _core.replace_each(base, partners)
  return bound, bound[tf.newaxis] - _core.log_mean_exp(swapped, axis=1)


@REGISTRY.register
class LocalARM(AntitheticPairs):
  r"""Local ARM for the P-sample bound over the first pair members.

  With P antithetic pairs from uniforms :math:`u_p`,
  :math:`L = \log \frac1P \sum_p e^{f(b^{(1)}_p)}` and :math:`L_p'` the same
  bound with :math:`b^{(1)}_p` replaced by its partner :math:`b^{(2)}_p`:

  .. math:: \hat g = \sum_p (L - L_p')\,(u_p - \tfrac12)

  i.e. ARM applied to each sample of the bound with the others held fixed
  (local DisARM with ARM's weight; local DisARM is its Rao-Blackwellization
  over :math:`u_p` given the pair, so it never has more variance). The
  returned value is L (direct path by backprop). Cost: 2P evaluations
  (``num_samples`` = 2P, default 2; P = 1 reduces to ARM). Unbiased for the
  gradient of E[L]. Yin & Zhou, ICLR 2019 (ARM); Dong, Mnih, Tucker,
  NeurIPS 2020, §4 (the local construction).
  """
  name = "local_arm"
  facts = Facts(estimates=Estimates.BOUND, cost=PAIRS, unbiased=True,
                paper="Yin & Zhou 2019; Dong, Mnih, Tucker 2020",
                evaluations_per_bound_term=2)

  def value(self, values, draw):
    first, _ = tf.split(values, 2, axis=0)
    return _core.log_mean_exp(first)

  def gradient(self, values, draw, logits):
    first, second = tf.split(values, 2, axis=0)
    _, signal = _local_signals(first, second)
    return tf.reduce_sum(signal[..., tf.newaxis] * (draw.noise.u - 0.5),
                         axis=0)


#: Local DisARM's option: average the estimators based on either member.
SYMMETRIZED = Option(
    "symmetrized", default=False, accepted=(True, False),
    doc="average with the estimator that uses the second pair members as "
    "the bound (objective: the mean of both bounds)")


@dataclasses.dataclass(frozen=True)
class LocalPairsNoise(AntitheticNoise):
  """:class:`AntitheticNoise` plus whether the value is symmetrized.

  Attributes:
    symmetrized: the returned bound is the mean of the bounds over the
      first and over the second pair members (option ``symmetrized``).
  """
  symmetrized: bool = False


@REGISTRY.register
class LocalDisARM(AntitheticPairs):
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

  Option ``symmetrized`` (default False; the official code's
  ``--symmetrized``): also form the estimator that uses the second
  members as the bound, :math:`L_2 = \log\frac1P\sum_p e^{f(b^{(2)}_p)}`
  with partners :math:`b^{(1)}_p` (its DisARM sign is
  :math:`(-1)^{b^{(1)}} = -(-1)^{b^{(2)}}` on disagreeing units), and
  average both: the value is :math:`\tfrac12(L + L_2)` and

  .. math:: \hat g = \sum_p \tfrac14\big[(L - L_p') - (L_2 -
     L_{2,p}')\big]\, 1[b^{(1)}_p \neq b^{(2)}_p]\,(-1)^{b^{(2)}_p}\,
     \sigma(|\theta|).

  Both bounds are P-sample bounds of independent samples, so the mean is
  unbiased for the same target; same cost. At P = 1 it equals DisARM.
  """
  name = "local_disarm"
  facts = Facts(estimates=Estimates.BOUND, cost=PAIRS, unbiased=True,
                options=(SYMMETRIZED,), paper="Dong, Mnih, Tucker 2020",
                evaluations_per_bound_term=2)

  def sample(self, logits, num_samples, seed, symmetrized
             ) -> _core.Draw[LocalPairsNoise]:
    draw = super().sample(logits, num_samples, seed)
    noise = draw.noise
    return _core.Draw(draw.samples, LocalPairsNoise(
        u=noise.u, first=noise.first, second=noise.second,
        symmetrized=bool(symmetrized)))

  def value(self, values, draw):
    first, second = tf.split(values, 2, axis=0)
    bound = _core.log_mean_exp(first)
    if draw.noise.symmetrized:
      bound = 0.5 * (bound + _core.log_mean_exp(second))
    return bound

  def gradient(self, values, draw, logits, symmetrized):
    first, second = tf.split(values, 2, axis=0)
    _, signal = _local_signals(first, second)
    if symmetrized:
      _, signal_second = _local_signals(second, first)
      signal = 0.5 * (signal - signal_second)
    # _disarm_weight includes the 1/2; per-pair terms are summed, not averaged.
    return tf.reduce_sum(
        signal[..., tf.newaxis] * _disarm_weight(draw.noise, logits), axis=0)
