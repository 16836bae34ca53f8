r"""The augment-REINFORCE family for Bernoulli latents: AR, ARM, DisARM,
local DisARM.

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

  def sample(self, logits, num_samples, seed) -> _core.Draw[AntitheticNoise]:
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
# Estimator of the multi-sample bound.
# --------------------------------------------------------------------------


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
  """
  name = "local_disarm"
  facts = Facts(estimates=Estimates.BOUND, cost=PAIRS, unbiased=True,
                paper="Dong, Mnih, Tucker 2020",
                evaluations_per_bound_term=2)

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
    return tf.reduce_sum(
        signal[..., tf.newaxis] * _disarm_weight(draw.noise, logits), axis=0)
