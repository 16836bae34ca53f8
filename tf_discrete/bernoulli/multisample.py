r"""Mutually antithetic multi-sample estimators for Bernoulli latents: ARMS
and its multi-sample-bound version.

Dimitriev & Zhou, "ARMS: Antithetic-REINFORCE-Multi-Sample gradient for
binary variables", ICML 2021.

Copulas. K uniforms :math:`c_1, \dots, c_K` per batch element and unit,
each marginally U(0, 1) and negatively dependent (independent across units
and batch elements):

* ``"dirichlet"`` (the paper's default): :math:`d \sim
  \mathrm{Dirichlet}(1_K)`, :math:`c_k = (1 - d_k)^{K-1}`. The marginal of
  :math:`d_k` is Beta(1, K-1), so :math:`c_k` is uniform. Its bivariate
  CDF is :math:`C_2(x, y) = (x^{1/(K-1)} + y^{1/(K-1)} - 1)_+^{K-1}`: two
  members cannot both be small (:math:`d_j + d_k \le 1`). d is drawn as
  the spacings of K - 1 sorted uniforms, so at K = 2 it is one uniform u
  per unit, :math:`(c_1, c_2) = (u, 1 - u)`.
* ``"gaussian"``: :math:`z = \sqrt{K/(K-1)}\,(\epsilon - \bar\epsilon)`
  with :math:`\epsilon \sim N(0, I_K)`, i.e. unit variances and the most
  negative equicorrelation :math:`\rho = -1/(K-1)`; :math:`c_k =
  \Phi(z_k)`.

Samples. With :math:`p = \sigma(\theta)`, :math:`b_k = 1[w_k < p]`, where
for the Dirichlet copula :math:`w_k = c_{K+1-k}` if :math:`p < \tfrac12`
and :math:`w_k = 1 - c_k` otherwise (the minority outcome of each unit
always uses the copula's lower tail, where it is antithetic), and
:math:`w_k = c_k` for the (symmetric) Gaussian copula. Each :math:`b_k` is
marginally Bernoulli(p).

Estimator. For any exchangeable coupling, with :math:`\bar f` the mean of
the K values,

.. math:: \hat g = \frac{1}{K-1}\sum_{k=1}^K (f(b_k) - \bar f)\,(b_k - p)\,
   \frac{p(1-p)}{p - P_{11}}

per unit, where :math:`P_{11} = P(b_j = 1, b_k = 1)` for :math:`j \neq k`
(the paper's debiased leave-one-out form). Unbiasedness: :math:`\hat g =
\frac{1}{K(K-1)}\sum_{j \neq k} (f_k - f_j)(b_k - p) \cdot` factor, and for
a pair, holding the other units' samples (exact draws from q, independent
of this unit) fixed in expectation, :math:`\mathbb{E}[(f_k - f_j)(b_k - p)]
= (F_1 - F_0)(p - P_{11})` with :math:`F_x` the mean of f given the unit is
x; the factor turns this into :math:`p(1-p)(F_1 - F_0)`, the exact
gradient. Independent samples (:math:`P_{11} = p^2`) give RLOO.

The factor, with :math:`m = \min(p, 1-p) = \sigma(-|\theta|)`:
:math:`p - P_{11} = P(b_j = 1, b_k = 0) = m - P(\text{both minority})`, so
:math:`\frac{p(1-p)}{p - P_{11}} = \sigma(|\theta|) / (1 - r)` with
:math:`r = P(\text{both minority}) / m`:

* Dirichlet: :math:`r = (2 - m^{-1/(K-1)})_+^{K-1}` (zero for
  :math:`m \le 2^{-(K-1)}`);
* Gaussian: :math:`1 - r = 2T(h, a)/m` with :math:`h = \Phi^{-1}(m)`,
  :math:`a = \sqrt{K/(K-2)}` and Owen's T function (the bivariate normal
  CDF on the diagonal, :math:`\Phi_2(h, h; \rho) = \Phi(h) - 2T(h, a)`),
  by Gauss-Legendre quadrature in float64.

K = 2 is DisARM. Both copulas are then the antithetic pair :math:`(u,
1-u)`, r = 0 and the factor is :math:`\sigma(|\theta|)`, so
:math:`\hat g = \tfrac12 (f_1 - f_2)(b_1 - b_2)\sigma(|\theta|)`, DisARM's
formula. With the Dirichlet copula the single uniform is the one DisARM
draws from the same seed, and the samples are DisARM's pair
:math:`b_1 = 1[1 - u < p]`, :math:`b_2 = 1[u < p]` (DisARM writes the first
as :math:`1[u > \sigma(-\theta)]`; the two roundings of :math:`1 - p` can
put a 2^-24 grid point between them, an event of probability at most
2^-24 per unit).
"""

import dataclasses

import numpy as np
import tensorflow as tf

from tf_discrete import _core
from tf_discrete.bernoulli import _common
from tf_discrete.bernoulli._common import REGISTRY
from tf_discrete.facts import Cost
from tf_discrete.facts import Estimates
from tf_discrete.facts import Facts
from tf_discrete.facts import Option

PAPER = "Dimitriev & Zhou 2021"

#: The copula option of ARMS and ARMS-bound.
COPULA = Option(
    "copula", default="dirichlet", accepted=(None, "dirichlet", "gaussian"),
    doc="joint law of the K uniforms: the Dirichlet copula (the paper's "
    "default) or the Gaussian copula with correlation -1/(K-1)")

# Gauss-Legendre rule on [0, 1] for Owen's T integral.
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(32)
_GL_NODES = 0.5 * (_GL_NODES + 1.0)
_GL_WEIGHTS = 0.5 * _GL_WEIGHTS

# |theta| beyond which the Gaussian factor is evaluated at this value:
# sigma(-700) ~ 1e-304 is the smallest minority probability float64 holds;
# the factor only matters where the minority outcome is ever drawn.
_MAX_ABS_LOGIT = 700.0


def _work_dtype(dtype):
  return tf.float64 if dtype == tf.float64 else tf.float32


# --------------------------------------------------------------------------
# Copulas.
# --------------------------------------------------------------------------


def dirichlet_copula(num_samples, shape, seed, dtype):
  r"""``[K, *shape]`` Dirichlet-copula uniforms :math:`c_k = (1-d_k)^{K-1}`.

  d is Dirichlet(1_K) as the spacings of K - 1 sorted uniforms (reversed,
  so that at K = 2, :math:`c = (u, 1 - u)` for the single uniform u drawn
  from ``seed``, the uniform DisARM draws).
  """
  k = num_samples
  u = _core.uniform(tf.concat([[k - 1], shape], 0), seed, dtype)
  if k == 2:
    points = u
  else:
    rank = u.shape.rank
    moved = tf.transpose(u, list(range(1, rank)) + [0])
    points = tf.sort(moved, axis=-1)
    points = tf.transpose(points, [rank - 1] + list(range(rank - 1)))
  zero = tf.zeros_like(points[:1])
  one = tf.ones_like(points[:1])
  edges = tf.concat([zero, points, one], 0)
  spacings = edges[1:] - edges[:-1]  # [K, *shape], sums to 1.
  d = tf.reverse(spacings, [0])
  return tf.pow(1.0 - d, tf.cast(k - 1, dtype))


def gaussian_copula(num_samples, shape, seed):
  r"""``[K, *shape]`` float64 Gaussian-copula uniforms :math:`\Phi(z_k)`,
  :math:`z = \sqrt{K/(K-1)}(\epsilon - \bar\epsilon)`."""
  k = num_samples
  u = _core.uniform(tf.concat([[k], shape], 0), seed, tf.float64) + 2.0**-33
  eps = tf.math.ndtri(u)
  z = np.sqrt(k / (k - 1.0)) * (eps - tf.reduce_mean(eps, 0, keepdims=True))
  return 0.5 * tf.math.erfc(-z / np.sqrt(2.0))  # Phi(z).


def copula_samples(logits, num_samples, seed, copula):
  """K mutually antithetic samples ``[K, *batch, D]`` and their ``w``.

  Returns ``(samples, w)``: ``samples = 1[w < sigma(logits)]`` in the
  logits' dtype, ``w`` the uniforms actually compared (work dtype).
  """
  k = num_samples
  shape = tf.shape(logits)
  if copula == "gaussian":
    w = gaussian_copula(k, shape, seed)
    p = tf.sigmoid(tf.cast(logits, tf.float64))
  else:
    dtype = _work_dtype(logits.dtype)
    c = dirichlet_copula(k, shape, seed, dtype)
    p = tf.sigmoid(tf.cast(logits, dtype))
    w = tf.where(p < 0.5, tf.reverse(c, [0]), 1.0 - c)
  return tf.cast(w < p, logits.dtype), w


# --------------------------------------------------------------------------
# The debiasing factor p(1-p) / (p - P11).
# --------------------------------------------------------------------------


def _owens_t_ratio(abs_logits, k):
  r""":math:`2T(h, a)/m` (float64) for :math:`m = \sigma(-|\theta|)`,
  :math:`h = \Phi^{-1}(m) \le 0`, :math:`a = \sqrt{K/(K-2)}`, K >= 3.

  :math:`T(h, a) = \frac{\phi(h)}{\sqrt{2\pi}} \int_0^a
  \frac{e^{-h^2x^2/2}}{1+x^2}dx`; the integrand is negligible beyond
  :math:`x = 10/|h|`, so the rule runs over :math:`[0, \min(a, 10/|h|)]`,
  and :math:`\phi(h)/m` is formed in log space (it is about |h| in the
  tail, where both underflow).
  """
  t = tf.minimum(tf.cast(abs_logits, tf.float64), _MAX_ABS_LOGIT)
  log_m = -_core.softplus(t)
  h = tf.math.ndtri(tf.exp(log_m))
  a = np.sqrt(k / (k - 2.0))
  abs_h = tf.abs(h)
  upper = tf.where(abs_h * a > 10.0, 10.0 / tf.maximum(abs_h, 1e-300),
                   tf.constant(a, tf.float64))
  x = upper[..., tf.newaxis] * _GL_NODES
  integrand = tf.exp(-0.5 * tf.square(h[..., tf.newaxis] * x)) / (1.0 + x * x)
  integral = upper * tf.reduce_sum(integrand * _GL_WEIGHTS, -1)
  log_phi_over_m = -0.5 * tf.square(h) - 0.5 * np.log(2 * np.pi) - log_m
  return 2.0 * tf.exp(log_phi_over_m) * integral / np.sqrt(2 * np.pi)


def debias_factor(logits, num_samples, copula):
  r""":math:`p(1-p)/(p - P_{11}) = \sigma(|\theta|)/(1 - r)` per unit
  (module docstring), in the logits' work dtype."""
  k = num_samples
  dtype = _work_dtype(logits.dtype)
  abs_t = tf.abs(tf.cast(logits, dtype))
  sigma_abs = tf.sigmoid(abs_t)
  if k == 2:
    return sigma_abs
  if copula == "gaussian":
    return sigma_abs / tf.cast(_owens_t_ratio(abs_t, k), dtype)
  # m^{-1/(K-1)} = exp(softplus(|theta|) / (K-1)); inf (-> r = 0) far out.
  inv_root = tf.exp(_core.softplus(abs_t) / (k - 1.0))
  r = tf.pow(tf.maximum(2.0 - inv_root, 0.0), k - 1.0)
  return sigma_abs / (1.0 - r)


def arms_gradient(values, samples, logits, copula):
  r"""The ARMS gradient ``[*batch, D]`` of K values ``[K, *batch]`` with
  samples ``[K, *batch, D]`` (the module docstring's formula)."""
  k = values.shape[0]
  dtype = _work_dtype(logits.dtype)
  f = tf.cast(values, dtype)
  centred = (f - tf.reduce_mean(f, 0))[..., tf.newaxis]
  p = tf.sigmoid(tf.cast(logits, dtype))
  score = tf.cast(samples, dtype) - p
  grad = (tf.reduce_sum(centred * score, 0) / (k - 1.0) *
          debias_factor(logits, k, copula))
  return tf.cast(grad, logits.dtype)


# --------------------------------------------------------------------------
# Estimators.
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CopulaNoise:
  r"""Noise of K mutually antithetic samples.

  Attributes:
    w: ``[K, *batch, D]`` (work dtype; float64 for the Gaussian copula):
      the copula uniforms compared with :math:`\sigma(\theta)`, sample k is
      ``1[w_k < sigma(theta)]``.
  """
  w: tf.Tensor


@REGISTRY.register
class ARMS(_core.Estimator):
  r"""ARMS: Antithetic-REINFORCE-Multi-Sample.

  .. math:: \hat g = \frac{1}{K-1}\sum_{k=1}^K \big(f(b_k) - \bar f\big)
     (b_k - \sigma(\theta))\,\frac{\sigma(\theta)\sigma(-\theta)}
     {\sigma(\theta) - P_{11}(\theta)}

  with K mutually antithetic samples :math:`b_k = 1[w_k < \sigma(\theta)]`
  from a copula (option ``copula``: ``'dirichlet'``, the paper's default,
  or ``'gaussian'``) and :math:`P_{11}` the probability that two of them
  are both 1 (closed form for the Dirichlet copula, Owen's T for the
  Gaussian). Cost: K >= 2 evaluations (``num_samples``, default 4).
  Unbiased; K = 2 is DisARM (identical samples and gradient from the same
  seed with the Dirichlet copula; module docstring), independent samples
  would give RLOO. Dimitriev & Zhou, "ARMS: Antithetic-REINFORCE-Multi-
  Sample gradient for binary variables", ICML 2021.
  """
  name = "arms"
  facts = Facts(estimates=Estimates.MEAN, cost=Cost(default=4, minimum=2),
                unbiased=True, options=(COPULA,), paper=PAPER)

  def sample(self, logits, num_samples, seed, copula
             ) -> _core.Draw[CopulaNoise]:
    samples, w = copula_samples(logits, num_samples, seed, copula)
    return _core.Draw(samples, CopulaNoise(w))

  def gradient(self, values, draw, logits, copula):
    return arms_gradient(values, draw.samples, logits, copula)


@dataclasses.dataclass(frozen=True)
class BoundCopulaNoise:
  r"""Noise of ARMS for the K-sample bound.

  Attributes:
    u: ``[K, *batch, D]`` uniforms of the K independent samples of the
      bound, ``1[u_k < sigma(theta)]``.
    w: ``[K, *batch, D]`` copula uniforms of the K antithetic samples that
      give the learning signal (:class:`CopulaNoise`).
  """
  u: tf.Tensor
  w: tf.Tensor


@REGISTRY.register
class ARMSBound(_core.Estimator):
  r"""ARMS for the K-sample bound :math:`L = \log\frac1K\sum_k e^{f(b_k)}`.

  K independent samples :math:`b_1..b_K` form the bound; K mutually
  antithetic samples :math:`\tilde b_1..\tilde b_K` (a copula, as
  :class:`ARMS`) give, for every term i of the bound, ARMS applied to
  :math:`g_i(b) = L(b_1, .., b_{i-1}, b, b_{i+1}, .., b_K)` with the other
  terms held fixed:

  .. math:: \hat g = \sum_{i=1}^K \frac{1}{K-1}\sum_{j=1}^K \big(L_{ij} -
     \bar L_{i\cdot}\big)(\tilde b_j - \sigma(\theta))\,
     \frac{\sigma(\theta)\sigma(-\theta)}{\sigma(\theta) - P_{11}}

  where :math:`L_{ij}` is L with :math:`f(b_i)` replaced by
  :math:`f(\tilde b_j)`. The returned value is L (the direct path of the
  bound by backprop). Cost: 2K evaluations (``num_samples`` = 2K, even,
  K >= 2; default 8, K = 4 as :class:`ARMS`): samples are stacked
  ``[b_1..b_K, b~_1..b~_K]``. Unbiased for the gradient of E[L], the
  independent K-sample bound: each term's estimate is ARMS for a function
  of that term's sample, and the product rule sums them. (The paper's
  code averages the K terms instead of summing them, i.e. it estimates 1/K
  times this gradient.) Option ``copula`` as :class:`ARMS`. Dimitriev &
  Zhou, ICML 2021 (multi-sample variational bounds).
  """
  name = "arms_bound"
  facts = Facts(estimates=Estimates.BOUND,
                cost=Cost(default=8, minimum=4, multiple=2,
                          per="bound term and its antithetic partner"),
                unbiased=True, options=(COPULA,), paper=PAPER,
                evaluations_per_bound_term=2)

  def sample(self, logits, num_samples, seed, copula
             ) -> _core.Draw[BoundCopulaNoise]:
    k = num_samples // 2
    seed_bound, seed_copula = _core.split_seed(seed, 2)
    u = _core.uniform(tf.concat([[k], tf.shape(logits)], 0), seed_bound,
                      logits.dtype)
    antithetic, w = copula_samples(logits, k, seed_copula, copula)
    samples = tf.concat([_common.threshold(u, logits), antithetic], 0)
    return _core.Draw(samples, BoundCopulaNoise(u=u, w=w))

  def value(self, values, draw):
    bound, _ = tf.split(values, 2, axis=0)
    return _core.log_mean_exp(bound)

  def gradient(self, values, draw, logits, copula):
    dtype = _work_dtype(logits.dtype)
    bound, partners = tf.split(tf.cast(values, dtype), 2, axis=0)
    k = bound.shape[0]
    # swapped[i, j, slot]: the bound's values with term i replaced by
    # partner j; [K (i), K (j), K (slot), *batch].
    rank = bound.shape.rank
    eye = tf.reshape(tf.eye(k, dtype=tf.bool), [k, 1, k] + [1] * (rank - 1))
    swapped = tf.where(eye, partners[tf.newaxis, :, tf.newaxis],
                       bound[tf.newaxis, tf.newaxis])
    bounds = _core.log_mean_exp(swapped, axis=2)  # [K (i), K (j), *batch]
    centred = bounds - tf.reduce_mean(bounds, axis=1, keepdims=True)
    signal = tf.reduce_sum(centred, axis=0)[..., tf.newaxis]  # [K, *b, 1]
    _, antithetic = tf.split(tf.cast(draw.samples, dtype), 2, axis=0)
    score = antithetic - tf.sigmoid(tf.cast(logits, dtype))
    grad = (tf.reduce_sum(signal * score, 0) / (k - 1.0) *
            debias_factor(logits, k, copula))
    return tf.cast(grad, logits.dtype)
