r"""Relaxations and straight-through estimators for categorical latents:
Gumbel-softmax (Concrete), straight-through, straight-through
Gumbel-softmax, Gumbel-Rao and ReinMax.

All five are biased for :math:`\nabla_\theta \mathbb{E}_q[f(z)]`, cost one
objective evaluation per sample (K samples, default 1, averaged), and need
the objective's gradient with respect to its samples
(``facts.needs_objective_gradient``): the objective gets differentiable
samples (:meth:`objective_samples`), so backprop reaches the logits through
the objective. It must be differentiable in the one-hot vectors (e.g.
``z @ embedding``, ``reduce_sum(z * a)``; not ``argmax(z)`` or
``tf.cast(z, tf.int32)``: those raise a ``ValueError``).

Noise. The exponential race of the other categorical estimators: per
(sample, batch element, variable, category) :math:`E \sim \mathrm{Exp}(1)`,
the perturbed logits :math:`\theta - \log E = \theta + G` (G standard
Gumbel), the hard sample :math:`D = \mathrm{onehot}(\arg\max_c(\theta_c +
G_c)) \sim \mathrm{Cat}(\mathrm{softmax}\,\theta)`, the same as
``reinforce``'s for the same seed, and the Concrete relaxation :math:`y =
\mathrm{softmax}((\theta + G)/\tau)` on the simplex.

Notation: :math:`g = \partial f/\partial D` at the hard sample, :math:`J(p)
g = p \odot (g - \langle p, g\rangle)` (the Jacobian of the softmax at the
point where it equals p, applied to g). Each straight-through estimator
sends :math:`J_{\mathrm{sur}}\, g` to the logits of every variable:

* ``straight_through``: :math:`J(\mathrm{softmax}\,\theta)\,g`;
* ``st_gumbel_softmax``: :math:`\tau^{-1} J(y)\,g`;
* ``gumbel_rao``: :math:`\frac1K\sum_k \tau^{-1} J(y_k)\,g` over K draws of
  G given D;
* ``reinmax``: :math:`2J(\pi)\,g - \tfrac12 J(\mathrm{softmax}\,\theta)\,g`,
  :math:`\pi = (D + \mathrm{softmax}(\theta/\tau))/2`.

``temperature`` may be a Python float, a scalar tensor or a
``tf.Variable`` (read at every call: assign to it to anneal, without
retracing). It is a hyperparameter: no gradient flows to it.
"""

import dataclasses
from typing import Optional

import tensorflow as tf

from tf_discrete import _core
from tf_discrete.bernoulli.relaxation import GUMBEL_SOFTMAX_PAPER
from tf_discrete.bernoulli.relaxation import NUM_RAO_SAMPLES
from tf_discrete.bernoulli.relaxation import temperature_option
from tf_discrete.bernoulli.relaxation import temperature_tensor
from tf_discrete.categorical import _common
from tf_discrete.categorical._common import REGISTRY
from tf_discrete.facts import Cost
from tf_discrete.facts import Estimates
from tf_discrete.facts import Facts


def softmax_vjp(p: tf.Tensor, g: tf.Tensor) -> tf.Tensor:
  r""":math:`(\mathrm{diag}(p) - pp^\top)\,g = p \odot (g - \langle p, g
  \rangle)` over the last axis (symmetric, so also the VJP)."""
  return p * (g - tf.reduce_sum(p * g, axis=-1, keepdims=True))


@dataclasses.dataclass(frozen=True)
class GumbelNoise:
  r"""Noise of the relaxation estimators.

  Attributes:
    log_e: ``[S, *batch, V, C]`` (work dtype) :math:`\log E`; the perturbed
      logits at the caller's logits are :math:`\theta - \log E`.
    perturbed: ``[S, *batch, V, C]`` (work dtype), :math:`\theta - \log E`
      at the sampled logits.
    index: ``[S, *batch, V]`` int32, the hard sample (argmax of
      ``perturbed``).
    conditional: ``[K - 1, S, *batch, V, C]`` perturbed logits drawn afresh
      given ``index`` (``gumbel_rao`` with K > 1), else None.
  """
  log_e: tf.Tensor
  perturbed: tf.Tensor
  index: tf.Tensor
  conditional: Optional[tf.Tensor] = None


class _GumbelSamples(_core.Estimator):
  """Exponential-race samples with their Gumbel noise.

  Subclasses define :meth:`objective_samples`. The gradient attached
  besides the objective's path is zero: everything comes through f.
  """

  def sample(self, logits, num_samples, seed,
             **options) -> _core.Draw[GumbelNoise]:
    theta = _common.to_work(logits)
    shape = tf.concat([[num_samples], tf.shape(theta)], 0)
    log_e = _common.log_exponential(shape, seed, theta.dtype)
    index = _common.exponential_race(log_e, theta)
    noise = GumbelNoise(log_e=log_e, perturbed=theta - log_e, index=index,
                        conditional=self.conditional_draws(
                            theta, index, seed, **options))
    return _core.Draw(self.forward_samples(noise, logits, **options), noise)

  def conditional_draws(self, theta, index, seed, **options):
    """Extra noise drawn given the hard samples (Gumbel-Rao); else None."""
    del theta, index, seed, options
    return None

  def forward_samples(self, noise, logits, **options):
    """What the objective is evaluated at (as constants): one-hot D."""
    del options
    return _common.one_hot(noise.index, _common.num_categories(logits),
                           logits.dtype)

  def gradient(self, values, draw, logits, **options):
    del values, draw, options
    return tf.zeros_like(logits)


class _StraightThrough(_GumbelSamples):
  """One-hot samples forward; backward through the surrogate Jacobian
  :meth:`surrogate_vjp`."""

  def surrogate_vjp(self, theta, draw, upstream, **options) -> tf.Tensor:
    """``[*batch, V, C]``: the surrogate Jacobian applied to ``upstream``
    (``[S, *batch, V, C]``, work dtype), summed over the S samples."""
    raise NotImplementedError

  def objective_samples(self, logits, draw, **options):
    theta = tf.stop_gradient(_common.to_work(logits))
    hard = draw.samples

    @tf.custom_gradient
    def straight_through(x):
      def grad(upstream):
        d_theta = self.surrogate_vjp(
            theta, draw, tf.cast(upstream, theta.dtype), **options)
        return tf.cast(d_theta, x.dtype)
      return tf.identity(hard), grad

    return straight_through(logits)


@REGISTRY.register
class GumbelSoftmax(_GumbelSamples):
  r"""Concrete / Gumbel-softmax relaxation.

  The objective is evaluated at the relaxed sample :math:`y =
  \mathrm{softmax}((\theta + G)/\tau)` on the simplex (G standard Gumbel,
  drawn as :math:`-\log E`) and differentiated pathwise:

  .. math:: \hat g_v = \frac1K\sum_k \tau^{-1} J(y_{k,v})\,
     \nabla_{y_v} f(y_k).

  The returned value is :math:`\frac1K\sum_k f(y_k)`, an unbiased estimate
  of the *relaxed* objective :math:`\mathbb{E}[f(y)]`, not of
  :math:`\mathbb{E}_q[f(z)]`: value and gradient are biased, the bias
  vanishing as :math:`\tau \to 0` while the variance grows. f must be
  defined on the simplex, not only at its vertices.

  Cost: K evaluations (default 1). Option ``temperature`` (default 0.5,
  the floor of the annealing schedule of Jang et al.; Maddison et al.
  recommend :math:`1/(C-1)`). Maddison, Mnih, Teh, "The Concrete
  distribution: a continuous relaxation of discrete random variables",
  ICLR 2017; Jang, Gu, Poole, "Categorical reparameterization with
  Gumbel-softmax", ICLR 2017.
  """
  name = "gumbel_softmax"
  facts = Facts(estimates=Estimates.MEAN, cost=Cost(default=1),
                unbiased=False, needs_objective_gradient=True,
                options=(temperature_option(0.5),),
                paper=GUMBEL_SOFTMAX_PAPER)

  def forward_samples(self, noise, logits, temperature):
    tau = temperature_tensor(temperature, noise.perturbed.dtype)
    return tf.cast(tf.nn.softmax(noise.perturbed / tau, axis=-1),
                   logits.dtype)

  def objective_samples(self, logits, draw, temperature):
    theta = _common.to_work(logits)
    tau = temperature_tensor(temperature, theta.dtype)
    return tf.cast(tf.nn.softmax((theta - draw.noise.log_e) / tau, axis=-1),
                   logits.dtype)


@REGISTRY.register
class StraightThrough(_StraightThrough):
  r"""Straight-through estimator (through the softmax).

  Forward: the one-hot sample D; backward: the Jacobian of the mean
  :math:`\mathrm{softmax}(\theta)` in place of the sample's,

  .. math:: \hat g_v = \frac1K\sum_k J(\mathrm{softmax}\,\theta_v)\,
     \nabla_{D_v} f(D_k).

  Cost: K evaluations (default 1); the value is the unbiased sample mean of
  f. The gradient is biased in general, exact (zero variance) for f linear
  in the one-hot vectors. Bengio, Léonard, Courville, "Estimating or
  propagating gradients through stochastic neurons for conditional
  computation", arXiv:1308.3432, 2013.
  """
  name = "straight_through"
  facts = Facts(estimates=Estimates.MEAN, cost=Cost(default=1),
                unbiased=False, needs_objective_gradient=True,
                paper="Bengio, Léonard, Courville 2013")

  def surrogate_vjp(self, theta, draw, upstream):
    del draw
    return softmax_vjp(tf.nn.softmax(theta, axis=-1),
                       tf.reduce_sum(upstream, axis=0))


@REGISTRY.register
class StraightThroughGumbelSoftmax(_StraightThrough):
  r"""Straight-through Gumbel-softmax (ST-GS).

  Forward: the one-hot sample :math:`D = \mathrm{onehot}(\arg\max(\theta +
  G))`; backward: the Jacobian of its relaxation :math:`y =
  \mathrm{softmax}((\theta + G)/\tau)`,

  .. math:: \hat g_v = \frac1K\sum_k \tau^{-1} J(y_{k,v})\,
     \nabla_{D_v} f(D_k).

  Cost: K evaluations (default 1); the value is the unbiased sample mean of
  f. Biased for every :math:`\tau`; the variance grows as :math:`\tau \to
  0`. Option ``temperature`` (default 1.0, the start of Jang et al.'s
  schedule and the usual ST-GS setting). Jang, Gu, Poole, "Categorical
  reparameterization with Gumbel-softmax", ICLR 2017.
  """
  name = "st_gumbel_softmax"
  facts = Facts(estimates=Estimates.MEAN, cost=Cost(default=1),
                unbiased=False, needs_objective_gradient=True,
                options=(temperature_option(1.0),),
                paper="Jang, Gu, Poole 2017")

  def surrogate_vjp(self, theta, draw, upstream, temperature):
    del theta
    tau = temperature_tensor(temperature, upstream.dtype)
    relaxed = tf.nn.softmax(draw.noise.perturbed / tau, axis=-1)
    return tf.reduce_sum(softmax_vjp(relaxed, upstream), axis=0) / tau


@REGISTRY.register
class GumbelRao(_StraightThrough):
  r"""Gumbel-Rao: ST-GS with its backward pass Rao-Blackwellized.

  Forward: the one-hot sample D (as ST-GS). Backward: the ST-GS Jacobian
  averaged over K Gumbel perturbations :math:`G_1, \dots, G_K` distributed
  as G given :math:`\arg\max(\theta + G) = D`, a Monte Carlo estimate of
  :math:`\mathbb{E}[\tau^{-1} J(y) \mid D]`:

  .. math:: \hat g_v = \frac1K\sum_{j=1}^K \tau^{-1} J(y_{j,v})\,
     \nabla_{D_v} f(D), \quad y_j = \mathrm{softmax}((\theta + G_j)/\tau).

  :math:`G_1` is the forward pass's own noise (a draw from the conditional
  law); :math:`G_2..G_K` are fresh, by the top-down construction in log
  space (:func:`_common.race_given_winner`: the winner's race time is
  :math:`E/Z`, the others add their own exponential times). The derivative
  is taken with G held fixed, as for ST-GS. So K = 1 is exactly
  ``st_gumbel_softmax`` with the same seed, and for any K the mean is
  ST-GS's while the variance is never larger.

  Cost: K evaluations of f (``num_samples``, default 1): the conditional
  draws only enter the backward pass (``num_rao_samples`` softmax Jacobian
  products per variable, with :math:`\nabla f` at the hard sample only).
  Biased as ST-GS. Options ``temperature`` (default 1.0, as
  ``st_gumbel_softmax``) and ``num_rao_samples`` (default 10, the smallest
  K of the paper's experiments). Paulus, Maddison, Krause,
  "Rao-Blackwellizing the straight-through Gumbel-softmax gradient
  estimator", ICLR 2021.
  """
  name = "gumbel_rao"
  facts = Facts(estimates=Estimates.MEAN, cost=Cost(default=1),
                unbiased=False, needs_objective_gradient=True,
                options=(temperature_option(1.0), NUM_RAO_SAMPLES),
                paper="Paulus, Maddison, Krause 2021")

  def conditional_draws(self, theta, index, seed, temperature,
                        num_rao_samples):
    del temperature
    if num_rao_samples == 1:
      return None
    (seed,) = _core.split_seed(seed, 1)
    shape = tf.concat([[num_rao_samples - 1], tf.shape(index),
                       [_common.num_categories(theta)]], 0)
    log_e = _common.log_exponential(shape, seed, theta.dtype)
    return _common.race_given_winner(log_e, theta, index)

  def surrogate_vjp(self, theta, draw, upstream, temperature,
                    num_rao_samples):
    del theta
    noise = draw.noise
    tau = temperature_tensor(temperature, upstream.dtype)
    perturbed = noise.perturbed[tf.newaxis]
    if num_rao_samples > 1:
      perturbed = tf.concat([perturbed, noise.conditional], 0)
    relaxed = tf.nn.softmax(perturbed / tau, axis=-1)  # [K, S, ..., C]
    vjp = tf.reduce_mean(softmax_vjp(relaxed, upstream[tf.newaxis]), axis=0)
    return tf.reduce_sum(vjp, axis=0) / tau


@REGISTRY.register
class ReinMax(_StraightThrough):
  r"""ReinMax: a second-order (Heun's method) straight-through estimator.

  Forward: the one-hot sample D; backward:

  .. math:: \hat g_v = \frac1K\sum_k \Big(2\,J(\pi_{k,v}) -
     \tfrac12 J(\mathrm{softmax}\,\theta_v)\Big)\nabla_{D_v} f(D_k),
     \quad \pi_k = \tfrac12\big(D_k + \mathrm{softmax}(\theta/\tau)\big).

  For f linear in D and :math:`\tau = 1`, :math:`\mathbb{E}[J(\pi)] =
  \tfrac34 J(\mathrm{softmax}\,\theta)`, so the gradient is unbiased
  (exact in mean, not per sample).

  Cost: K evaluations (default 1); the value is the unbiased sample mean of
  f. Biased in general. Option ``temperature`` (default 1.0, the paper's).
  Liu, Chen, Chen, Zhou, Zhang, Gao, "Bridging discrete and
  backpropagation: straight-through and beyond", NeurIPS 2023.
  """
  name = "reinmax"
  facts = Facts(estimates=Estimates.MEAN, cost=Cost(default=1),
                unbiased=False, needs_objective_gradient=True,
                options=(temperature_option(1.0),),
                paper="Liu et al. 2023")

  def surrogate_vjp(self, theta, draw, upstream, temperature):
    tau = temperature_tensor(temperature, theta.dtype)
    hard = tf.cast(draw.samples, theta.dtype)
    mixed = 0.5 * (hard + tf.nn.softmax(theta / tau, axis=-1))
    probs = tf.nn.softmax(theta, axis=-1)
    return tf.reduce_sum(
        2.0 * softmax_vjp(mixed, upstream) - 0.5 * softmax_vjp(probs,
                                                                upstream),
        axis=0)
