r"""Score-function estimators for categorical latents: REINFORCE and RLOO.

Both draw K independent samples per batch element by the exponential race
(:class:`_common.IndependentSamples`) and use the score
:math:`\nabla_\theta \log q(z) = \mathrm{onehot}(z) - \mathrm{softmax}(\theta)`
of each variable.
"""

import tensorflow as tf

from tf_discrete import _core
from tf_discrete.categorical import _common
from tf_discrete.categorical._common import REGISTRY
from tf_discrete.facts import Cost
from tf_discrete.facts import Estimates
from tf_discrete.facts import Facts


@REGISTRY.register
class Reinforce(_common.IndependentSamples):
  r"""REINFORCE (score function), no baseline.

  .. math:: \hat g_{v} = \frac1K \sum_{k=1}^K f(z_k)\,
     \big(\mathrm{onehot}(z_{k,v}) - \mathrm{softmax}(\theta_v)\big)

  Objective evaluations: K (``num_samples``, default 1). Unbiased; high
  variance. Williams, "Simple statistical gradient-following algorithms for
  connectionist reinforcement learning", Machine Learning 1992.
  """
  name = "reinforce"
  facts = Facts(estimates=Estimates.MEAN, cost=Cost(default=1),
                unbiased=True, paper="Williams 1992")

  def gradient(self, values, draw, logits):
    theta = _common.to_work(logits)
    f = tf.cast(values, theta.dtype)[..., tf.newaxis, tf.newaxis]
    samples = tf.cast(draw.samples, theta.dtype)
    grad = tf.reduce_mean(f * _common.score(samples, theta), axis=0)
    return _common.cast_like(grad, logits)


@REGISTRY.register
class ReinforceLeaveOneOut(_common.IndependentSamples):
  r"""REINFORCE with the leave-one-out baseline (RLOO, VarGrad).

  .. math:: \hat g_v = \frac1K \sum_k \Big(f(z_k) - \frac{1}{K-1}
     \sum_{j \neq k} f(z_j)\Big)\big(\mathrm{onehot}(z_{k,v}) -
     \mathrm{softmax}(\theta_v)\big)

  Objective evaluations: K >= 2 (``num_samples``); the default is K = C,
  the budget the coupled-estimators paper gives RLOO. Unbiased (the
  baseline of sample k is independent of :math:`z_k`). Kool, van Hoof,
  Welling, "Buy 4 REINFORCE samples, get a baseline for free!", ICLR
  DeepRLStructPred workshop 2019; identical to VarGrad (Richter et al.,
  2020).
  """
  name = "rloo"
  facts = Facts(
      estimates=Estimates.MEAN,
      cost=Cost(default=lambda event_shape: max(2, int(event_shape[-1])),
                minimum=2, formula="C"),
      unbiased=True, paper="Kool, van Hoof, Welling 2019")

  def gradient(self, values, draw, logits):
    theta = _common.to_work(logits)
    values = tf.cast(values, theta.dtype)
    signal = values - _core.leave_one_out_mean(values)
    samples = tf.cast(draw.samples, theta.dtype)
    grad = tf.reduce_mean(
        signal[..., tf.newaxis, tf.newaxis] * _common.score(samples, theta),
        axis=0)
    return _common.cast_like(grad, logits)
