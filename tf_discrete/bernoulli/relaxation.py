r"""Relaxations and straight-through estimators for Bernoulli latents:
Gumbel-softmax (binary Concrete), straight-through, straight-through
Gumbel-softmax, Gumbel-Rao and ReinMax.

All five are biased for :math:`\nabla_\theta \mathbb{E}_q[f(b)]`, cost one
objective evaluation per sample (K samples, default 1, averaged), and need
the objective's gradient with respect to its samples
(``facts.needs_objective_gradient``): :func:`tf_discrete._core.run_estimator`
hands the objective differentiable samples (:meth:`objective_samples`), so
backprop reaches the logits through the objective. The objective must be
differentiable in the samples (products, matmuls, log-likelihoods of
``2b - 1`` or b: fine; casting, rounding, indexing: a ``ValueError``).

Noise. One open uniform :math:`u` per (sample, batch element, unit) gives
the logistic noise :math:`L = \log(1-u) - \log u` and the *perturbed
logit* :math:`s = \theta + L`; the hard sample is :math:`b = 1[s > 0] \sim
\mathrm{Bernoulli}(\sigma(\theta))` and the binary Concrete relaxation is
:math:`y = \sigma(s/\tau)` (Maddison et al. 2017, Jang et al. 2017). The
same seed gives the same hard samples for the four estimators that
evaluate f at b.

Notation: :math:`g = \partial f / \partial b` evaluated at the hard sample
(what backprop of the objective brings to the samples), :math:`\sigma'(x) =
\sigma(x)\sigma(-x)`. Each straight-through estimator replaces the zero
derivative :math:`\partial b / \partial\theta` by a surrogate
:math:`w(\theta)` per unit, so the logits get :math:`w \cdot g`:

* ``straight_through``: :math:`w = \sigma'(\theta)`;
* ``st_gumbel_softmax``: :math:`w = \sigma'(s/\tau)/\tau`;
* ``gumbel_rao``: :math:`w = \frac1K \sum_k \sigma'(s_k/\tau)/\tau` over K
  draws of s given b;
* ``reinmax``: :math:`w = 2\pi(1-\pi) - \tfrac12\sigma'(\theta)`,
  :math:`\pi = (b + \sigma(\theta/\tau))/2`.

``temperature`` may be a Python float, a scalar tensor or a
``tf.Variable`` (read at every call: assign to it to anneal, without
retracing). It is a hyperparameter: no gradient flows to it.
"""

import dataclasses
from typing import Optional

import tensorflow as tf

from tf_discrete import _core
from tf_discrete.bernoulli import _common
from tf_discrete.bernoulli._common import REGISTRY
from tf_discrete.facts import Cost
from tf_discrete.facts import Estimates
from tf_discrete.facts import Facts
from tf_discrete.facts import Option
from tf_discrete.facts import positive_int
from tf_discrete.facts import positive_number

GUMBEL_SOFTMAX_PAPER = "Maddison, Mnih, Teh 2017; Jang, Gu, Poole 2017"


def temperature_option(default: float) -> Option:
  """The ``temperature`` option: a positive float, tensor or variable."""
  return Option(
      "temperature", default=default, validate=positive_number,
      doc="relaxation temperature tau > 0 (a float, or a scalar tensor / "
      "tf.Variable to anneal it)")


#: Conditional draws of the Gumbel-Rao backward pass.
NUM_RAO_SAMPLES = Option(
    "num_rao_samples", default=10, validate=positive_int,
    doc="K conditional noise draws averaged in the backward pass")


def temperature_tensor(temperature, dtype: tf.DType) -> tf.Tensor:
  """The temperature as a constant-gradient scalar of ``dtype``.

  A variable is read here (at run time inside ``tf.function``), never
  frozen into a constant.
  """
  return tf.stop_gradient(tf.cast(tf.convert_to_tensor(temperature), dtype))


def sigmoid_derivative(x: tf.Tensor) -> tf.Tensor:
  r""":math:`\sigma(x)\sigma(-x)`, without the cancellation of
  :math:`\sigma(1 - \sigma)` (0, not NaN, for |x| up to the dtype's range)."""
  return tf.sigmoid(x) * tf.sigmoid(-x)


def relaxed_sigmoid(x: tf.Tensor) -> tf.Tensor:
  r""":math:`\sigma(x)` with the derivative :math:`\sigma(x)\sigma(-x)`.

  Autodiff of ``tf.sigmoid`` computes :math:`y(1 - y)` from the output,
  which loses every digit of :math:`1 - y` once y rounds to 1 (x > 17 in
  float32) and changes by a factor of 2 when a 1-ulp difference in x (XLA
  fusing a division differently) moves y by an ulp near 1.
  """

  @tf.custom_gradient
  def forward(x):
    def grad(upstream):
      return upstream * sigmoid_derivative(x)
    return tf.sigmoid(x), grad

  return forward(x)


@dataclasses.dataclass(frozen=True)
class LogisticNoise:
  r"""Noise of the relaxation estimators.

  Attributes:
    logistic: ``[S, *batch, D]`` (work dtype) logistic noise L; the
      perturbed logit at the caller's logits is :math:`\theta + L`.
    perturbed: ``[S, *batch, D]`` (work dtype), :math:`s = \theta + L` at
      the sampled logits; the hard sample is ``1[s > 0]``.
    conditional: ``[K - 1, S, *batch, D]`` perturbed logits drawn afresh
      given the hard samples (``gumbel_rao`` with K > 1), else None.
  """
  logistic: tf.Tensor
  perturbed: tf.Tensor
  conditional: Optional[tf.Tensor] = None


class _LogisticSamples(_core.Estimator):
  """Samples b = 1[theta + L > 0] with their logistic noise.

  Subclasses define :meth:`objective_samples`. The gradient attached
  besides the objective's path is zero: everything comes through f.
  """

  def sample(self, logits, num_samples, seed,
             **options) -> _core.Draw[LogisticNoise]:
    theta = tf.cast(logits, _common.work_dtype(logits.dtype))
    shape = tf.concat([[num_samples], tf.shape(theta)], 0)
    logistic = _common.logistic_noise(shape, seed, theta.dtype)
    perturbed = theta + logistic
    hard = _common.hard_threshold(perturbed, theta.dtype)
    noise = LogisticNoise(logistic=logistic, perturbed=perturbed,
                          conditional=self.conditional_draws(
                              theta, hard, seed, **options))
    return _core.Draw(self.forward_samples(noise, hard, logits.dtype,
                                           **options), noise)

  def conditional_draws(self, theta, hard, seed, **options):
    """Extra noise drawn given the hard samples (Gumbel-Rao); else None."""
    del theta, hard, seed, options
    return None

  def forward_samples(self, noise, hard, dtype, **options):
    """What the objective is evaluated at (as constants): b by default."""
    del noise, options
    return tf.cast(hard, dtype)

  def gradient(self, values, draw, logits, **options):
    del values, draw, options
    return tf.zeros_like(logits)


class _StraightThrough(_LogisticSamples):
  r"""Hard samples forward; backward :math:`\partial/\partial\theta =
  \sum_s w_s \cdot g_s` with the surrogate derivative :meth:`surrogate`."""

  def surrogate(self, theta, draw, **options) -> tf.Tensor:
    r"""Surrogate :math:`\partial b/\partial\theta`, ``[S or 1, *batch, D]``
    (work dtype)."""
    raise NotImplementedError

  def objective_samples(self, logits, draw, **options):
    theta = tf.stop_gradient(tf.cast(logits, _common.work_dtype(logits.dtype)))
    hard = draw.samples

    @tf.custom_gradient
    def straight_through(x):
      def grad(upstream):
        weight = self.surrogate(theta, draw, **options)
        d_theta = tf.reduce_sum(tf.cast(upstream, theta.dtype) * weight,
                                axis=0)
        return tf.cast(d_theta, x.dtype)
      return tf.identity(hard), grad

    return straight_through(logits)


@REGISTRY.register
class GumbelSoftmax(_LogisticSamples):
  r"""Binary Concrete / Gumbel-softmax relaxation.

  The objective is evaluated at the relaxed sample
  :math:`y = \sigma((\theta + L)/\tau) \in (0, 1)^D`, :math:`L = \log(1-u)
  - \log u`, and differentiated pathwise:

  .. math:: \hat g = \frac1K\sum_k \nabla_y f(y_k) \odot
     \frac{\sigma'((\theta + L_k)/\tau)}{\tau}

  The returned value is :math:`\frac1K\sum_k f(y_k)`, an unbiased estimate
  of the *relaxed* objective :math:`\mathbb{E}[f(y)]`, not of
  :math:`\mathbb{E}_q[f(b)]`; value and gradient are biased for those of
  :math:`\mathbb{E}_q[f]`, and the bias vanishes as :math:`\tau \to 0`
  while the gradient variance grows (as :math:`1/\tau` where a unit's
  perturbed logit is near 0). f must be defined on [0, 1]^D.

  Cost: K evaluations (default 1). Option ``temperature`` (default 0.5,
  the floor of the annealing schedule of Jang et al.; Maddison et al.
  recommend 2/3 for binary variables). Maddison, Mnih, Teh, "The Concrete
  distribution: a continuous relaxation of discrete random variables",
  ICLR 2017; Jang, Gu, Poole, "Categorical reparameterization with
  Gumbel-softmax", ICLR 2017.
  """
  name = "gumbel_softmax"
  facts = Facts(estimates=Estimates.MEAN, cost=Cost(default=1),
                unbiased=False, needs_objective_gradient=True,
                options=(temperature_option(0.5),),
                paper=GUMBEL_SOFTMAX_PAPER)

  def forward_samples(self, noise, hard, dtype, temperature):
    del hard
    tau = temperature_tensor(temperature, noise.perturbed.dtype)
    return tf.cast(tf.sigmoid(noise.perturbed / tau), dtype)

  def objective_samples(self, logits, draw, temperature):
    theta = tf.cast(logits, _common.work_dtype(logits.dtype))
    tau = temperature_tensor(temperature, theta.dtype)
    return tf.cast(relaxed_sigmoid((theta + draw.noise.logistic) / tau),
                   logits.dtype)


@REGISTRY.register
class StraightThrough(_StraightThrough):
  r"""Straight-through estimator (through the mean).

  Forward: the hard sample b; backward: the derivative of the mean
  :math:`\sigma(\theta)` in place of the step's,

  .. math:: \hat g = \frac1K \sum_k \sigma'(\theta) \odot \nabla_b f(b_k).

  Cost: K evaluations (default 1); the value is the unbiased sample mean of
  f. The gradient is biased in general, but unbiased when f is multilinear
  in the units (a sum of products of distinct units: then
  :math:`\partial f/\partial b_d = f(b_{d \leftarrow 1}) - f(b_{d
  \leftarrow 0})` does not depend on :math:`b_d`), and exact
  (zero variance) when f is linear. Bengio, Léonard, Courville, "Estimating
  or propagating gradients through stochastic neurons for conditional
  computation", arXiv:1308.3432, 2013.
  """
  name = "straight_through"
  facts = Facts(estimates=Estimates.MEAN, cost=Cost(default=1),
                unbiased=False, needs_objective_gradient=True,
                paper="Bengio, Léonard, Courville 2013")

  def surrogate(self, theta, draw):
    del draw
    return sigmoid_derivative(theta)


@REGISTRY.register
class StraightThroughGumbelSoftmax(_StraightThrough):
  r"""Straight-through Gumbel-softmax (ST-GS).

  Forward: the hard sample :math:`b = 1[s > 0]`, :math:`s = \theta + L`;
  backward: the Jacobian of its binary Concrete relaxation
  :math:`\sigma(s/\tau)`,

  .. math:: \hat g = \frac1K\sum_k \frac{\sigma'(s_k/\tau)}{\tau} \odot
     \nabla_b f(b_k).

  Cost: K evaluations (default 1); the value is the unbiased sample mean of
  f. The gradient is biased (for every :math:`\tau`), with variance growing
  as :math:`\tau \to 0`. Option ``temperature`` (default 1.0, the start of
  Jang et al.'s schedule and the usual ST-GS setting). Jang, Gu, Poole,
  "Categorical reparameterization with Gumbel-softmax", ICLR 2017.
  """
  name = "st_gumbel_softmax"
  facts = Facts(estimates=Estimates.MEAN, cost=Cost(default=1),
                unbiased=False, needs_objective_gradient=True,
                options=(temperature_option(1.0),),
                paper="Jang, Gu, Poole 2017")

  def surrogate(self, theta, draw, temperature):
    del theta
    tau = temperature_tensor(temperature, draw.noise.perturbed.dtype)
    return sigmoid_derivative(draw.noise.perturbed / tau) / tau


@REGISTRY.register
class GumbelRao(_StraightThrough):
  r"""Gumbel-Rao: ST-GS with its backward pass Rao-Blackwellized.

  Forward: the hard sample b (as ST-GS). Backward: the ST-GS surrogate
  averaged over K perturbed logits :math:`s_1, \dots, s_K` distributed as
  s given b, a Monte Carlo estimate of :math:`\mathbb{E}[\sigma'(s/\tau)
  \mid b]/\tau`:

  .. math:: \hat g = \frac{1}{K}\sum_{j=1}^{K}
     \frac{\sigma'(s_j/\tau)}{\tau} \odot \nabla_b f(b).

  :math:`s_1` is the forward pass's own perturbed logit (a draw from the
  conditional law), :math:`s_2..s_K` are fresh: logistic(:math:`\theta`)
  truncated to the side of b, by inverse CDF in log space
  (:func:`_common.conditional_perturbed_logits`). So K = 1 is exactly
  ``st_gumbel_softmax`` with the same seed, and for any K the mean is
  ST-GS's while the variance is never larger (conditioning).

  Cost: K evaluations of f (``num_samples``, default 1): the conditional
  draws only enter the backward pass, which evaluates ``num_rao_samples``
  sigmoid derivatives per unit and needs :math:`\nabla f` at the hard
  sample only. Biased as ST-GS. Options ``temperature`` (default 1.0, as
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

  def conditional_draws(self, theta, hard, seed, temperature,
                        num_rao_samples):
    del temperature
    if num_rao_samples == 1:
      return None
    (seed,) = _core.split_seed(seed, 1)
    shape = tf.concat([[num_rao_samples - 1], tf.shape(hard)], 0)
    v = _common.open_uniform(shape, seed, theta.dtype)
    return _common.conditional_perturbed_logits(theta, hard, v)

  def surrogate(self, theta, draw, temperature, num_rao_samples):
    del theta
    noise = draw.noise
    tau = temperature_tensor(temperature, noise.perturbed.dtype)
    perturbed = noise.perturbed[tf.newaxis]
    if num_rao_samples > 1:
      perturbed = tf.concat([perturbed, noise.conditional], 0)
    return tf.reduce_mean(sigmoid_derivative(perturbed / tau), axis=0) / tau


@REGISTRY.register
class ReinMax(_StraightThrough):
  r"""ReinMax, in the binary form of its two-category estimator.

  Each unit is the two-category variable with logits :math:`(0, \theta)`
  (probabilities :math:`(1 - \sigma(\theta), \sigma(\theta))`). ReinMax's
  categorical backward, :math:`2\,J(\pi)\,g - \tfrac12 J(\pi_0)\,g` with
  :math:`J(p) = \mathrm{diag}(p) - pp^\top`, :math:`\pi_0 =
  \mathrm{softmax}(\theta)` and :math:`\pi = (D + \mathrm{softmax}
  (\theta/\tau))/2`, reduces for the logit :math:`\theta` (the one-hot's
  gradient is :math:`(0, \partial f/\partial b)`) to

  .. math:: \hat g = \frac1K\sum_k \Big(2\pi_k(1-\pi_k) - \tfrac12
     \sigma'(\theta)\Big) \odot \nabla_b f(b_k),
     \quad \pi_k = \tfrac12\big(b_k + \sigma(\theta/\tau)\big),

  with :math:`1 - \pi_k = \frac12(1 - b_k + \sigma(-\theta/\tau))`
  computed directly. It is the second-order (Heun) approximation of the
  gradient: for f linear in b and :math:`\tau = 1`, :math:`\mathbb{E}[2\pi
  (1-\pi)] = \tfrac32\sigma'(\theta)`, so the gradient is unbiased
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

  def surrogate(self, theta, draw, temperature):
    tau = temperature_tensor(temperature, theta.dtype)
    hard = tf.cast(draw.samples, theta.dtype)
    pi_one = 0.5 * (hard + tf.sigmoid(theta / tau))
    pi_zero = 0.5 * (1.0 - hard + tf.sigmoid(-theta / tau))
    return 2.0 * pi_one * pi_zero - 0.5 * sigmoid_derivative(theta)
