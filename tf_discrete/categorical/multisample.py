r"""Multi-sample estimators for categoricals: CARMS and the unordered-set
estimator.

* CARMS (Dimitriev & Zhou, "CARMS: Categorical-Antithetic-REINFORCE
  Multi-Sample gradient estimator", NeurIPS 2021): K copula-coupled
  (mutually antithetic) samples of every variable, RLOO with every pair's
  term importance-weighted by :math:`q(a)q(b)/J(a, b)`, J the pair pmf of
  the coupling.
* The unordered-set estimator (Kool, van Hoof, Welling, "Estimating
  gradients for discrete random variables by sampling without
  replacement", ICLR 2020): K distinct samples drawn without replacement,
  each weighted by the probability of the unordered set, with its built-in
  baseline.

Notation as the package: logits :math:`\theta` ``[*batch, V, C]``,
:math:`q_v = \mathrm{softmax}(\theta_v)`, objective f of all V variables,
score :math:`s_v(z) = \mathrm{onehot}(z_v) - q_v`.
"""

import dataclasses
import itertools

import numpy as np
import tensorflow as tf

from tf_discrete import _core
from tf_discrete.bernoulli import multisample as bernoulli_multisample
from tf_discrete.categorical import _common
from tf_discrete.categorical._common import REGISTRY
from tf_discrete.facts import Cost
from tf_discrete.facts import Estimates
from tf_discrete.facts import Facts
from tf_discrete.facts import Option

# --------------------------------------------------------------------------
# CARMS.
# --------------------------------------------------------------------------

#: How CARMS couples its K samples and where its pair pmf comes from.
COUPLING = Option(
    "coupling", default="inverse_cdf", accepted=(None, "inverse_cdf", "gumbel"),
    doc="'inverse_cdf': inverse CDF of Dirichlet-copula uniforms under a "
    "random category order, exact pair pmf (unbiased); 'gumbel': Gumbel-max "
    "of Dirichlet-copula uniforms with an empirical pair pmf from 100 extra "
    "copula draws (the paper's ecarms; biased)")

#: Extra copula draws of the empirical pair pmf (``coupling='gumbel'``).
EMPIRICAL_DRAWS = 100


def category_orders(num_categories):
  """Static ``[M, C]`` orders of the categories, M = C(C-1)/2 (1 for C=2).

  One order per pair a < b: a first, b last, the others in increasing
  index order between them. Every pair of distinct categories has an order
  that puts one of them last, which is what makes every pair reachable by
  the Dirichlet copula (module docstring of :class:`CARMS`).
  """
  orders = []
  for a, b in itertools.combinations(range(num_categories), 2):
    middle = [c for c in range(num_categories) if c not in (a, b)]
    orders.append([a] + middle + [b])
  return np.array(orders, np.int32)


def _dirichlet_bivariate_cdf(x_root, y_root, k):
  r""":math:`C_2(x, y) = (x^{1/(K-1)} + y^{1/(K-1)} - 1)_+^{K-1}` from the
  roots :math:`x^{1/(K-1)}, y^{1/(K-1)}`; the integer power by products
  (``tf.pow`` of float64 costs an exp and a log per element)."""
  base = tf.nn.relu(x_root + y_root - 1.0)
  power = base
  for _ in range(int(k) - 2):
    power = power * base
  return power


def _interval_roots(probs, categories, num_samples):
  r"""Roots :math:`L_c^{1/(K-1)}, R_c^{1/(K-1)}` of the interval
  :math:`[L_c, R_c)` of each of ``categories`` ``[*batch, V, N]`` (int32)
  under every order m: each ``[*batch, V, M, N]``."""
  num_categories = probs.shape[-1]
  orders = category_orders(num_categories)
  num_orders = orders.shape[0]
  # position[m, c]: where order m puts category c.
  position = np.argsort(orders, axis=-1).astype(np.int32)
  ordered = tf.gather(probs, orders, axis=-1)  # [*batch, V, M, C (r)]
  upper = tf.math.cumsum(ordered, axis=-1)
  lower = upper - ordered
  # Flat index m * C + position[m, c] into the [M * C] last axis.
  offset = num_categories * np.arange(num_orders, dtype=np.int32)[:, None]
  flat_position = tf.constant(position + offset)
  at = tf.gather(tf.transpose(flat_position), categories)  # [*b, V, N, M]
  at = tf.linalg.matrix_transpose(at)  # [*batch, V, M, N]
  at_shape = tf.shape(at)
  at = tf.reshape(at, tf.concat([at_shape[:-2], [-1]], 0))
  alpha = 1.0 / (num_samples - 1.0)

  def root(bound):
    flat = tf.reshape(bound, tf.concat([tf.shape(bound)[:-2], [-1]], 0))
    value = tf.gather(flat, at, batch_dims=flat.shape.rank - 1)
    return tf.pow(tf.clip_by_value(tf.reshape(value, at_shape), 0.0, 1.0),
                  alpha)

  return root(lower), root(upper)


def _mean_rectangle(first, second, num_samples):
  r""":math:`\frac1M\sum_m [C_2(R_a, R_b) - C_2(L_a, R_b) - C_2(R_a, L_b) +
  C_2(L_a, L_b)]` from ``first = (L_a, R_a)`` and ``second = (L_b, R_b)``
  roots, broadcast against each other, the orders on axis -3."""
  (lower_a, upper_a), (lower_b, upper_b) = first, second
  k = num_samples
  rectangles = (_dirichlet_bivariate_cdf(upper_a, upper_b, k) -
                _dirichlet_bivariate_cdf(lower_a, upper_b, k) -
                _dirichlet_bivariate_cdf(upper_a, lower_b, k) +
                _dirichlet_bivariate_cdf(lower_a, lower_b, k))
  return tf.reduce_mean(rectangles, axis=-3)


def inverse_cdf_pair_pmf(probs, num_samples):
  r"""Pair pmf ``[*batch, V, C, C]`` of the inverse-CDF coupling.

  :math:`J(a, b) = \frac1M\sum_m [C_2(R_a, R_b) - C_2(L_a, R_b) - C_2(R_a,
  L_b) + C_2(L_a, L_b)]` with :math:`[L_c, R_c)` the interval of category c
  under order m and :math:`C_2` the Dirichlet copula's bivariate CDF.
  ``probs`` float64 ``[*batch, V, C]``. Costs O(M C²) per variable; the
  estimator needs only :func:`observed_pair_pmf`.
  """
  num_categories = probs.shape[-1]
  every = tf.broadcast_to(tf.range(num_categories),
                          tf.shape(probs, out_type=tf.int32))
  roots = _interval_roots(probs, every, num_samples)
  return _mean_rectangle(tuple(r[..., :, tf.newaxis] for r in roots),
                         tuple(r[..., tf.newaxis, :] for r in roots),
                         num_samples)


def observed_pair_pmf(probs, index, num_samples):
  r""":math:`J(z_j, z_k)` ``[K (j), K (k), *batch, V]`` of the inverse-CDF
  coupling at the sampled categories ``index`` ``[K, *batch, V]``.

  The entries of :func:`inverse_cdf_pair_pmf` at the K² observed pairs
  only, O(M K²) per variable instead of O(M C²). Order m = (a, b) puts a
  first, b last and the others in index order between, so the lower bound
  of category c is :math:`L_c = S_c + q_a` for c < a, :math:`S_c` for
  a < c < b, :math:`S_c - q_b` for c > b (:math:`S_c = \sum_{c' < c}
  q_{c'}`), 0 for c = a and :math:`1 - q_c` for c = b, and
  :math:`R_c = L_c + q_c`: over the M = C(C-1)/2 orders a category's bounds
  take only C + 2 values, :math:`S_c + \mathrm{sign}(j - c)\, q_j` for every
  j, 0 and :math:`1 - q_c`. Their roots cost O(C K) powers, not O(M K),
  and are picked per order by static selections, not gathers. This is
  what makes CARMS affordable for many categories.
  """
  num_categories = probs.shape[-1]
  orders = category_orders(num_categories)
  first, last = orders[:, 0], orders[:, -1]  # a_m < b_m, [M]
  # Static [C, M] selections of j = a_m and j = b_m among the candidates.
  pick_first = tf.constant(np.eye(num_categories)[:, first], probs.dtype)
  pick_last = tf.constant(np.eye(num_categories)[:, last], probs.dtype)
  z = _common.leading_to_last(index, 1)  # [*batch, V, K]
  q_z = tf.gather(probs, z, batch_dims=probs.shape.rank - 1)
  s_z = tf.gather(tf.math.cumsum(probs, axis=-1, exclusive=True), z,
                  batch_dims=probs.shape.rank - 1)
  sign = tf.sign(tf.cast(tf.range(num_categories) - z[..., tf.newaxis],
                         probs.dtype))  # [*batch, V, K, C]
  candidates = s_z[..., tf.newaxis] + sign * probs[..., tf.newaxis, :]
  alpha = 1.0 / (num_samples - 1.0)

  def root(x):
    return tf.pow(tf.clip_by_value(x, 0.0, 1.0), alpha)

  c = z[..., tf.newaxis]  # [*batch, V, K, 1] against [M]
  cases = (c == first, c == last, c < first, c > last)

  def bound_roots(shift, at_first, at_last):
    """Roots ``[*batch, V, M, K]`` of L_c + ``shift`` over the orders."""
    values = root(candidates + shift[..., tf.newaxis])
    middle = root(s_z + shift)[..., tf.newaxis]
    chosen = (at_first, at_last, tf.linalg.matmul(values, pick_first),
              tf.linalg.matmul(values, pick_last))
    out = tf.broadcast_to(middle, tf.shape(chosen[2]))
    for case, value in zip(cases[::-1], chosen[::-1]):
      out = tf.where(case, value, out)
    return tf.linalg.matrix_transpose(out)

  lower = bound_roots(tf.zeros_like(q_z), tf.zeros_like(q_z)[..., tf.newaxis],
                      root(1.0 - q_z)[..., tf.newaxis])
  upper = bound_roots(q_z, root(q_z)[..., tf.newaxis],
                      tf.ones_like(q_z)[..., tf.newaxis])
  pmf = _mean_rectangle((lower[..., :, tf.newaxis], upper[..., :, tf.newaxis]),
                        (lower[..., tf.newaxis, :], upper[..., tf.newaxis, :]),
                        num_samples)  # [*batch, V, K, K]
  return _common.last_to_leading(pmf, 2)


def _inverse_cdf_sample(probs, num_samples, seed):
  """Category indices ``[K, *batch, V]`` (int32) of the inverse-CDF
  coupling: a uniformly drawn order per batch element and variable, the
  same K Dirichlet-copula uniforms through its inverse CDF."""
  num_categories = probs.shape[-1]
  orders = tf.constant(category_orders(num_categories))
  seed_order, seed_copula = _core.split_seed(seed, 2)
  shape = tf.shape(probs)[:-1]
  order = _common.uniform_index(shape, seed_order, tf.float64,
                                orders.shape[0])
  perm = tf.gather(orders, order)  # [*batch, V, C]
  thresholds = tf.math.cumsum(_common.permute_last(probs, perm),
                              axis=-1)[..., :-1]
  u = bernoulli_multisample.dirichlet_copula(num_samples, shape, seed_copula,
                                             tf.float64)  # [K, *batch, V]
  position = tf.reduce_sum(
      tf.cast(u[..., tf.newaxis] >= thresholds, tf.int32), axis=-1)
  index = _common.take_last(perm, position)
  return index


def _gumbel_sample(theta, num_samples, shape, seed):
  r"""Category indices ``[K, *shape[:-1]]`` of the Gumbel-max coupling:
  :math:`z_k = \arg\max_c (\theta_c - \log(-\log u_{kc}))` with
  :math:`u_{\cdot c}` Dirichlet-copula uniforms over k (independent across
  c); ``shape`` may carry extra leading draws."""
  u = bernoulli_multisample.dirichlet_copula(num_samples, shape, seed,
                                             tf.float64)
  u = tf.clip_by_value(u, 2.0**-60, 1.0 - 2.0**-53)
  return _common.exponential_race(tf.math.log(-tf.math.log(u)), theta)


def empirical_pair_pmf(theta, index, num_samples, seed):
  r"""Empirical pair pmf ``[*batch, V, C, C]`` of the Gumbel-max coupling:
  the frequency of ordered pairs :math:`(z_j, z_k)`, :math:`j \neq k`,
  over :data:`EMPIRICAL_DRAWS` extra copula draws and the observed draw
  ``index`` ``[K, *batch, V]`` (so every observed pair has a positive
  estimate)."""
  k = num_samples
  num_categories = theta.shape[-1]
  shape = tf.concat([[EMPIRICAL_DRAWS], tf.shape(theta)], 0)
  extra = _gumbel_sample(theta, k, shape, seed)  # [K, N, *batch, V]
  counts = tf.concat([
      tf.reduce_sum(tf.one_hot(extra, num_categories, dtype=tf.float64), 0),
      tf.reduce_sum(tf.one_hot(index, num_categories, dtype=tf.float64), 0,
                    keepdims=True)], 0)  # [N + 1, *batch, V, C]
  pairs = (tf.reduce_sum(counts[..., :, tf.newaxis] *
                         counts[..., tf.newaxis, :], 0) -
           tf.linalg.diag(tf.reduce_sum(counts, 0)))
  return pairs / ((EMPIRICAL_DRAWS + 1.0) * k * (k - 1.0))


def _pairs(index):
  """``(z_j, z_k)`` for every ordered pair of samples, each ``[K, K, *batch,
  V]``, from ``index`` ``[K, *batch, V]``."""
  first, second = index[:, tf.newaxis], index[tf.newaxis, :]
  shape = tf.shape(first + second)
  return tf.broadcast_to(first, shape), tf.broadcast_to(second, shape)


@dataclasses.dataclass(frozen=True)
class CarmsNoise:
  r"""Noise of the K coupled samples of CARMS.

  Attributes:
    index: ``[K, *batch, V]`` int32 sampled categories.
    pair_weight: ``[K, K, *batch, V]`` float64, :math:`q(z_j)q(z_k) /
      J(z_j, z_k)` for :math:`z_{j,v} \neq z_{k,v}`, zero for ties (and on
      the diagonal).
  """
  index: tf.Tensor
  pair_weight: tf.Tensor


@REGISTRY.register
class CARMS(_core.Estimator):
  r"""CARMS: Categorical-Antithetic-REINFORCE Multi-Sample.

  K samples of every variable, coupled across k and independent across
  variables and batch elements, each marginally :math:`q_v`; with
  :math:`J_v(a, b) = P(z_{j,v} = a, z_{k,v} = b)` (:math:`j \neq k`, the
  same for every pair: the coupling is exchangeable) and
  :math:`w_v(a, b) = q_v(a) q_v(b) / J_v(a, b)` (0 for a = b),

  .. math:: \hat g_v = \frac{1}{K(K-1)} \sum_{j \neq k} w_v(z_{j,v},
     z_{k,v})\,\big(f(z_j) - f(z_k)\big)\, s_v(z_j).

  Unbiased: holding variable v's pair fixed at (a, b), the other variables
  of :math:`z_j` and :math:`z_k` are exact draws from q independent of it,
  so a term's mean is :math:`\sum_{a,b} J(a,b) w(a,b) (F(a) - F(b)) s(a) =
  \sum_{a \neq b} q(a)q(b)(F(a) - F(b))s(a)`, the exact gradient
  (:math:`F(a)` the mean of f given :math:`z_v = a`), provided
  :math:`J(a, b) > 0` for every :math:`a \neq b`. Ties (a = b) have
  conditional mean zero and are dropped. Independent samples (J = q q^T)
  give RLOO.

  Coupling (option ``coupling``):

  * ``'inverse_cdf'`` (default): the paper's construction. Per batch
    element and variable an order of the categories is drawn uniformly
    from C(C-1)/2 orders (:func:`category_orders`: for every pair a < b, a
    first and b last), and the K samples are the inverse CDF, under that
    order, of K Dirichlet-copula uniforms (:mod:`tf_discrete.bernoulli.
    multisample`). The pair pmf is analytic: the copula's rectangle
    probabilities averaged over the orders (:func:`inverse_cdf_pair_pmf`,
    float64). A pair a, b is reachable under the order that puts one of
    them last, so the estimator is unbiased. Pairs whose computed pmf
    underflows float64 (an event of probability ~1e-16) get weight 0.
  * ``'gumbel'``: Gumbel-max of Dirichlet-copula uniforms (one copula over
    the K samples per category); its pair pmf has no closed form and is
    estimated from 100 extra copula draws plus the observed one (the
    paper's ``ecarms``). The estimate's noise enters the weights
    nonlinearly, so this variant is biased (slightly: see the tests).

  Cost: K >= 2 evaluations (``num_samples``, default 4, the sample count of
  the experiment command of the paper's code). Dimitriev & Zhou, "CARMS:
  Categorical-Antithetic-REINFORCE Multi-Sample gradient estimator",
  NeurIPS 2021.
  """
  name = "carms"
  facts = Facts(estimates=Estimates.MEAN, cost=Cost(default=4, minimum=2),
                unbiased=True, options=(COUPLING,),
                paper="Dimitriev & Zhou 2021")

  def sample(self, logits, num_samples, seed, coupling
             ) -> _core.Draw[CarmsNoise]:
    k = num_samples
    theta = tf.cast(logits, tf.float64)
    probs = tf.nn.softmax(theta, axis=-1)
    num_categories = _common.num_categories(logits)
    seed_sample, seed_pmf = _core.split_seed(seed, 2)
    # Pair weights of the observed pairs: [K (j), K (k), *batch, V].
    if coupling == "gumbel":
      index = _gumbel_sample(theta, k, tf.shape(theta), seed_sample)
      first, second = _pairs(index)
      joint = empirical_pair_pmf(theta, index, k, seed_pmf)
      flat = tf.reshape(
          joint, tf.concat([tf.shape(joint)[:-2], [num_categories**2]], 0))
      pmf = _common.take_last(flat, first * num_categories + second)
    else:
      index = _inverse_cdf_sample(probs, k, seed_sample)
      first, second = _pairs(index)
      pmf = observed_pair_pmf(probs, index, k)
    q_first = _common.take_last(probs, first)
    q_second = _common.take_last(probs, second)
    usable = tf.logical_and(tf.not_equal(first, second), pmf > 0.0)
    pair_weight = tf.where(usable, q_first * q_second /
                           tf.where(usable, pmf, tf.ones_like(pmf)),
                           tf.zeros_like(pmf))
    samples = _common.one_hot(index, num_categories, logits.dtype)
    return _core.Draw(samples, CarmsNoise(index=index,
                                          pair_weight=pair_weight))

  def gradient(self, values, draw, logits, coupling):
    del coupling
    noise = draw.noise
    k = values.shape[0]
    probs = tf.nn.softmax(tf.cast(logits, tf.float64), axis=-1)
    f = tf.cast(values, tf.float64)
    diff = f[:, tf.newaxis] - f[tf.newaxis, :]  # [K, K, *batch]
    coefficient = tf.reduce_sum(noise.pair_weight * diff[..., tf.newaxis],
                                axis=1) / (k * (k - 1.0))  # [K, *batch, V]
    score = tf.cast(draw.samples, tf.float64) - probs
    grad = tf.reduce_sum(coefficient[..., tf.newaxis] * score, axis=0)
    return _common.cast_like(grad, logits)


# --------------------------------------------------------------------------
# The unordered-set estimator.
# --------------------------------------------------------------------------

#: Largest set size: the weights need the 2^K subsets of the sampled set.
MAX_SET_SIZE = 12


def _log1mexp(x):
  r""":math:`\log(1 - e^x)` for :math:`x \le 0` (-inf at 0)."""
  return tf.where(x > -np.log(2.0), tf.math.log(-tf.math.expm1(x)),
                  tf.math.log1p(-tf.exp(x)))


def _logaddexp(a, b):
  top = tf.maximum(a, b)
  return top + tf.math.log1p(tf.exp(-tf.abs(a - b)))


def stochastic_beam_search(log_probs, num_samples, seed):
  r"""K distinct joint states, drawn without replacement from q.

  The Gumbel-top-k trick on the product space, computed top-down over the
  variables (stochastic beam search, Kool, van Hoof, Welling, ICML 2019):
  every prefix of the V variables carries the maximum of the Gumbel-
  perturbed log-probabilities of its completions, sampled conditionally on
  its parent's (children's perturbations
  :math:`\tilde G_c = \phi_c + \mathrm{Gumbel}`, shifted so their maximum
  equals the parent's :math:`T`: :math:`G_c = -\log(e^{-T} - e^{-Z} +
  e^{-\tilde G_c})`, Z the children's maximum); keeping the K largest
  prefixes at every depth yields exactly the K states with the largest
  perturbed log-probabilities, i.e. a sample of K states without
  replacement, in the order they would be drawn. Static shapes: K beams,
  V steps of a top-k over K·C candidates.

  Args:
    log_probs: ``[*batch, V, C]`` log-softmax of the logits.
    num_samples: K <= C^V.
    seed: stateless seed.

  Returns:
    ``(index [*batch, K, V] int32, log_q [*batch, K])``: the states, in
    decreasing perturbed log-probability, and their log-probabilities.
  """
  k = num_samples
  num_vars, num_categories = log_probs.shape[-2], log_probs.shape[-1]
  batch_shape = tf.shape(log_probs)[:-2]
  dtype = log_probs.dtype
  noise_shape = tf.concat([[num_vars], batch_shape, [k, num_categories]], 0)
  gumbel = -_common.log_exponential(noise_shape, seed, dtype)
  neg_inf = tf.constant(-np.inf, dtype)
  first_beam = tf.one_hot(0, k, on_value=True, off_value=False)
  valid = tf.broadcast_to(first_beam, tf.concat([batch_shape, [k]], 0))
  top = tf.zeros(tf.shape(valid), dtype)  # Perturbed maxima T of beams.
  log_q = tf.zeros(tf.shape(valid), dtype)
  index = tf.zeros(tf.concat([batch_shape, [k, 0]], 0), tf.int32)
  batch_dims = valid.shape.rank - 1
  for v in range(num_vars):
    children = log_q[..., tf.newaxis] + log_probs[..., v, tf.newaxis, :]
    perturbed = children + gumbel[v]  # [*batch, K, C]
    largest = tf.reduce_max(perturbed, axis=-1, keepdims=True)
    shifted = perturbed - _log1mexp(perturbed - largest)
    conditioned = -_logaddexp(-top[..., tf.newaxis], -shifted)
    conditioned = tf.where(valid[..., tf.newaxis], conditioned, neg_inf)
    flat = tf.reshape(conditioned,
                      tf.concat([batch_shape, [k * num_categories]], 0))
    top, chosen = tf.math.top_k(flat, k=k, sorted=True)
    parent = chosen // num_categories
    category = chosen % num_categories
    valid = top > neg_inf
    log_q = tf.gather(
        tf.reshape(children, tf.shape(flat)), chosen, batch_dims=batch_dims)
    index = tf.concat([tf.gather(index, parent, batch_dims=batch_dims),
                       category[..., tf.newaxis]], axis=-1)
  return index, log_q


def _subset_tables(k):
  """Static tables over the 2^K subsets B of the K sampled states (bit i
  of B: state i is in B)."""
  subsets = np.arange(2**k)
  member = ((subsets[:, None] >> np.arange(k)) & 1).astype(np.float64)
  superset = subsets[:, None] | (1 << np.arange(k))[None, :]  # B + {t}
  return member, superset, member.sum(1).astype(np.int32)


def log_complement_mass(index, log_probs, member):
  r""":math:`\log q(z \notin B)` ``[*batch, 2^K]`` for every subset B of
  the sampled states, as a sum of positive terms (no cancellation when B
  holds almost all the mass).

  A state outside B leaves the prefix tree of B at some depth d:
  :math:`q(z \notin B) = \sum_d \sum_{\pi} q(z_{<d} = \pi)\,q_d(z_d \notin
  \mathrm{children}_B(\pi))` over the distinct length-d prefixes
  :math:`\pi` of members of B, the last factor a log-sum-exp over the free
  categories.

  Args:
    index: ``[*batch, K, V]`` states.
    log_probs: ``[*batch, V, C]``.
    member: static ``[2^K, K]`` membership table.
  """
  k = index.shape[-2]
  num_categories = log_probs.shape[-1]
  dtype = log_probs.dtype
  neg_inf = tf.constant(-np.inf, dtype)
  member = tf.constant(member, dtype)
  same = tf.cast(tf.equal(index[..., :, tf.newaxis, :],
                          index[..., tf.newaxis, :, :]), dtype)
  # same_prefix[..., i, j, d]: states i and j agree on variables < d.
  same_prefix = tf.math.cumprod(same, axis=-1, exclusive=True)
  one_hot = tf.one_hot(index, num_categories, dtype=dtype)  # [*b, K, V, C]
  chosen = tf.reduce_sum(one_hot * log_probs[..., tf.newaxis, :, :], -1)
  log_prefix = tf.math.cumsum(chosen, axis=-1, exclusive=True)  # [*b, K, V]
  terms = []
  for i in range(k):
    agree = same_prefix[..., i, :, :]  # [*b, K (j), V (d)]
    earlier = member * tf.constant(np.arange(k) < i, dtype)
    # State i represents its prefix in B at depth d if it is in B and no
    # earlier member of B shares that prefix.
    duplicated = tf.einsum("bj,...jd->...bd", earlier, agree)
    represents = tf.logical_and(member[:, i, tf.newaxis] > 0,
                                duplicated < 0.5)
    blocked = tf.einsum("bj,...jd,...jdc->...bdc", member, agree,
                        one_hot) > 0.5
    free = tf.reduce_logsumexp(
        tf.where(blocked, neg_inf, log_probs[..., tf.newaxis, :, :]), -1)
    terms.append(tf.where(represents,
                          log_prefix[..., i, tf.newaxis, :] + free, neg_inf))
  log_mass = tf.reduce_logsumexp(tf.stack(terms, -1), axis=[-2, -1])
  # The empty set leaves everything.
  return tf.concat([tf.zeros_like(log_mass[..., :1]), log_mass[..., 1:]], -1)


def log_set_probabilities(index, log_q, log_probs):
  r""":math:`\log P^{D \setminus A}(S \setminus A)` ``[*batch, 2^K]`` for
  every subset A of the sampled set S.

  :math:`P^{D\setminus A}(S\setminus A)` is the probability that sampling
  without replacement from q with A removed draws exactly the states
  :math:`S \setminus A` first (in any order). With :math:`H(B)` that
  quantity for :math:`A = B`: :math:`H(S) = 1` and
  :math:`H(B) = \sum_{t \in S\setminus B} \frac{q(t)}{q(z\notin B)}
  H(B \cup \{t\})`, a recursion over the 2^K subsets.
  """
  k = index.shape[-2]
  member, superset, size = _subset_tables(k)
  log_mass = log_complement_mass(index, log_probs, member)
  dtype = log_probs.dtype
  neg_inf = tf.constant(-np.inf, dtype)
  inside = tf.constant(member > 0)
  log_h = tf.zeros_like(log_mass)
  for level in reversed(range(k)):
    candidates = log_q[..., tf.newaxis, :] + tf.gather(log_h, superset,
                                                       axis=-1)
    candidates = tf.where(inside, neg_inf, candidates)
    updated = tf.reduce_logsumexp(candidates, axis=-1) - log_mass
    log_h = tf.where(tf.constant(size == level), updated, log_h)
  return log_h


@dataclasses.dataclass(frozen=True)
class UnorderedSetNoise:
  r"""Noise of the unordered-set estimator.

  Attributes:
    index: ``[K, *batch, V]`` int32, the K distinct joint states.
    weight: ``[K, *batch]``, :math:`q(s)R(S, s)` (sums to 1).
    baseline_weight: ``[K (s), K (s'), *batch]``,
      :math:`q(s')R^{D\setminus s}(S, s')` (each row sums to 1).
  """
  index: tf.Tensor
  weight: tf.Tensor
  baseline_weight: tf.Tensor


def _unordered_set_evaluations(event_shape):
  num_vars, num_categories = int(event_shape[-2]), int(event_shape[-1])
  return min(4, num_categories**num_vars)


@REGISTRY.register
class UnorderedSet(_core.Estimator):
  r"""The unordered-set estimator with its built-in baseline.

  A set S of K distinct joint states z = (z_1, .., z_V) is drawn without
  replacement from q; with :math:`p(S)` the probability of drawing S in any
  order, :math:`P^{D\setminus s}(S \setminus s)` the probability of
  drawing the rest first once s is removed from the domain, and
  :math:`R(S, s) = P^{D\setminus s}(S\setminus s)/p(S)`,
  :math:`R^{D\setminus s}(S, s') = P^{D\setminus\{s,s'\}}(S\setminus
  \{s,s'\}) / P^{D\setminus s}(S\setminus s)` (1 for s' = s):

  .. math:: \hat g_v = \sum_{s \in S} q(s) R(S, s)\Big(f(s) - \sum_{s'
     \in S} q(s') R^{D\setminus s}(S, s') f(s')\Big) s_v(s)

  and the returned value is :math:`\sum_{s\in S} q(s)R(S,s) f(s)`, an
  unbiased estimate of :math:`\mathbb{E}_q[f]` (a convex combination; the
  plain mean of f over S would be biased, since the members of S are not
  draws from q). Unbiased: :math:`\mathbb{E}_S[1[s\in S]R(S,s)] = 1` for
  every s, and the baseline's mean is :math:`\mathbb{E}_q[f]\,\nabla
  \sum_s q(s) = 0`. With S the whole domain it is the exact gradient;
  when all q(s) are small it tends to RLOO.

  Several variables (V > 1). The estimator is applied to the joint space
  of the V variables: S is K distinct joint states without replacement
  from the product distribution q. That is tractable and exact with
  stochastic beam search (the Gumbel-top-k trick computed top-down over the
  variables, :func:`stochastic_beam_search`; static shapes, K beams), and
  every probability the weights need involves only the K sampled states:
  q(z outside a subset of them) is a sum over the subset's prefix tree
  (:func:`log_complement_mass`), and the set probabilities follow by a
  recursion over the 2^K subsets (:func:`log_set_probabilities`). So one
  estimate costs K evaluations, as RLOO with K samples, and the gradient of
  every variable comes from the same K joint states. (The alternative,
  independent per-variable sets with the other variables held at a draw
  from q, would be unbiased too but cost 1 + V(K-1) evaluations.) Kool et
  al. draw their sets the same way for sequences.

  Cost: K evaluations (``num_samples``), 2 <= K <= min(C^V, 12), default
  min(4, C^V); the weights take O(2^K K V C) work per batch element.
  Numerics: log space throughout, no :math:`1 - \sum q` cancellation.
  Kool, van Hoof, Welling, "Estimating gradients for discrete random
  variables by sampling without replacement", ICLR 2020.
  """
  name = "unordered_set"
  facts = Facts(
      estimates=Estimates.MEAN,
      cost=Cost(default=_unordered_set_evaluations, minimum=2,
                formula="min(4, C^V)"),
      unbiased=True, paper="Kool, van Hoof, Welling 2020")

  def sample(self, logits, num_samples, seed) -> _core.Draw[UnorderedSetNoise]:
    k = num_samples
    num_vars = logits.shape[-2]
    num_categories = _common.num_categories(logits)
    if k > min(num_categories**num_vars, MAX_SET_SIZE):
      raise ValueError(
          f"`num_samples`={k} is invalid for estimator 'unordered_set': it "
          f"draws that many distinct joint states, so it needs at most "
          f"C^V = {num_categories}^{num_vars} and at most {MAX_SET_SIZE} "
          f"(the weights enumerate the 2^K subsets of the set).")
    log_probs = tf.nn.log_softmax(_common.to_work(logits), axis=-1)
    index, log_q = stochastic_beam_search(log_probs, k, seed)
    log_h = log_set_probabilities(index, log_q, log_probs)
    single = 1 << np.arange(k)
    pair = single[:, None] | single[None, :]  # Diagonal: {i} itself.
    log_h_empty = log_h[..., :1]
    log_h_single = tf.gather(log_h, single, axis=-1)  # [*b, K]
    log_h_pair = tf.gather(log_h, pair, axis=-1)  # [*b, K, K]
    weight = tf.exp(log_q + log_h_single - log_h_empty)
    baseline_weight = tf.exp(log_q[..., tf.newaxis, :] + log_h_pair -
                             log_h_single[..., tf.newaxis])
    # Move the set axis first: [*b, K, ...] -> [K, *b, ...].
    rank = log_q.shape.rank
    lead = [rank - 1] + list(range(rank - 1))
    index = tf.transpose(index, lead + [rank])
    samples = _common.one_hot(index, num_categories, logits.dtype)
    return _core.Draw(samples, UnorderedSetNoise(
        index=index, weight=tf.transpose(weight, lead),
        baseline_weight=tf.transpose(baseline_weight,
                                     [rank - 1, rank] + list(range(rank - 1)))))

  def value(self, values, draw):
    weight = tf.cast(draw.noise.weight, values.dtype)
    return tf.reduce_sum(weight * values, axis=0)

  def gradient(self, values, draw, logits):
    noise = draw.noise
    theta = _common.to_work(logits)
    f = tf.cast(values, theta.dtype)  # [K, *batch]
    baseline = tf.reduce_sum(noise.baseline_weight * f[tf.newaxis], axis=1)
    coefficient = noise.weight * (f - baseline)  # [K, *batch]
    score = tf.cast(draw.samples, theta.dtype) - tf.nn.softmax(theta, -1)
    grad = tf.reduce_sum(
        coefficient[..., tf.newaxis, tf.newaxis] * score, axis=0)
    return _common.cast_like(grad, logits)
