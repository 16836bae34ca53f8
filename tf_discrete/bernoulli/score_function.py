r"""Score-function estimators for Bernoulli latents: REINFORCE, RLOO, VIMCO.

All three draw K independent samples (:class:`_common.IndependentSamples`)
and weight the score :math:`\nabla_\theta \log q(b) = b - \sigma(\theta)`
of each sample by a learning signal.
"""

import tensorflow as tf

from tf_discrete import _core
from tf_discrete.bernoulli import _common
from tf_discrete.bernoulli._common import REGISTRY
from tf_discrete.facts import Cost
from tf_discrete.facts import Estimates
from tf_discrete.facts import Facts


@REGISTRY.register
class Reinforce(_common.IndependentSamples):
  r"""REINFORCE / score function, no baseline.

  .. math:: \hat g = \frac1K \sum_k f(b_k)\,(b_k - \sigma(\theta))

  Cost: K evaluations (default 1). Unbiased; high variance (no control
  variate). Williams, "Simple statistical gradient-following algorithms for
  connectionist reinforcement learning", Machine Learning 1992.
  """
  name = "reinforce"
  facts = Facts(estimates=Estimates.MEAN, cost=Cost(default=1),
                unbiased=True, paper="Williams 1992")

  def gradient(self, values, draw, logits):
    return tf.reduce_mean(
        values[..., tf.newaxis] * _common.score(draw.samples, logits), axis=0)


@REGISTRY.register
class ReinforceLeaveOneOut(_common.IndependentSamples):
  r"""REINFORCE with the leave-one-out baseline (RLOO; VarGrad).

  .. math:: \hat g = \frac1K \sum_k \Big(f(b_k) - \frac{1}{K-1}\sum_{j\neq k}
     f(b_j)\Big)(b_k - \sigma(\theta))

  Cost: K >= 2 evaluations (default 2). Unbiased (the baseline of sample k
  is independent of b_k). Kool, van Hoof, Welling, "Buy 4 REINFORCE samples,
  get a baseline for free!", ICLR DeepRLStructPred workshop 2019; identical
  to VarGrad (Richter et al., 2020).
  """
  name = "rloo"
  facts = Facts(estimates=Estimates.MEAN, cost=Cost(default=2, minimum=2),
                unbiased=True, paper="Kool, van Hoof, Welling 2019")

  def gradient(self, values, draw, logits):
    signal = values - _core.leave_one_out_mean(values)
    return tf.reduce_mean(
        signal[..., tf.newaxis] * _common.score(draw.samples, logits), axis=0)


@REGISTRY.register
class VIMCO(_common.IndependentSamples):
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
  facts = Facts(estimates=Estimates.BOUND, cost=Cost(default=2, minimum=2),
                unbiased=True, paper="Mnih & Rezende 2016")

  def value(self, values, draw):
    return _core.log_mean_exp(values)

  def gradient(self, values, draw, logits):
    signal = (_core.log_mean_exp(values)[tf.newaxis] -
              _core.leave_one_out_log_mean_exp(values))
    return tf.reduce_sum(
        signal[..., tf.newaxis] * _common.score(draw.samples, logits), axis=0)
