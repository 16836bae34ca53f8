r"""The augment-REINFORCE family for categoricals: AR, ARS, ARSM, ARS+, ARSM+.

Yin, Yue, Zhou, "ARSM: Augment-REINFORCE-swap-merge estimator for gradient
backpropagation through categorical variables", ICML 2019.

Augmentation. Draw :math:`E_c \sim \mathrm{Exp}(1)` i.i.d. and let
:math:`\pi = E / \sum_c E_c \sim \mathrm{Dirichlet}(1_C)`. Then
:math:`z = \arg\min_c \pi_c e^{-\theta_c} \sim \mathrm{Cat}(\mathrm{softmax}
\,\theta)`. Differentiating the exponential densities (rate
:math:`e^{\theta_c}`) gives :math:`\partial_{\theta_c}\mathbb{E} f(z) =
\mathbb{E}[f(z)(1 - E_c)]`; conditioning on :math:`\pi` (the total
:math:`\sum E \sim \mathrm{Gamma}(C)` is independent of :math:`\pi`, so
:math:`\mathbb{E}[E_c\mid\pi] = C\pi_c`) gives AR,
:math:`\partial_{\theta_c} = \mathbb{E}[f(z)(1 - C\pi_c)]`.

Swap. Exchanging :math:`\pi_c` and :math:`\pi_j` preserves the Dirichlet
law, so :math:`\mathbb{E}[f(z^{c\rightleftharpoons j})(1 - C\pi_j)]` is also
the gradient, where :math:`z^{c\rightleftharpoons j} = \arg\min_i
(\pi^{c\rightleftharpoons j})_i e^{-\theta_i}` is a *pseudo-action*. Since
the gradient sums to zero over c (softmax is shift invariant),
:math:`\frac1C\sum_m f(z^{m\rightleftharpoons j})` is a free baseline.

Several variables. One :math:`\pi_v` per variable; a pseudo-action applies
its swap to every variable at once (the vector
:math:`z^{c\rightleftharpoons j} = (z_1^{c\rightleftharpoons j}, \dots,
z_V^{c\rightleftharpoons j})`), so the cost does not grow with V. The joint
swap is a measure-preserving map of all the :math:`\pi_v`, so the
one-variable argument holds for each coordinate.

Rao-Blackwellization (ARS+, ARSM+). For a reference index j pick another
index :math:`l \neq j` (drawn statelessly). Given every coordinate of
:math:`\pi_v` except :math:`\pi_j, \pi_l`, the pair is uniform on the
segment :math:`\pi_j + \pi_l = r` (Dirichlet(1) is uniform on the simplex),
i.e. :math:`t = \pi_j \sim U[0, r]`. In each pseudo-action, t sits at one
position (value :math:`t e^{-\theta_p}`, increasing), :math:`r - t` at
another (decreasing), and the other positions are constant; so the event
"the pseudo-action is a" is an interval of t with end points

* position of t wins: :math:`t < \min(t_\times, K e^{\theta_{p_j}})`,
* position of r - t wins: :math:`t > \max(t_\times, r - K e^{\theta_{p_l}})`,
* a constant position wins: :math:`K e^{\theta_{p_j}} < t < r - K
  e^{\theta_{p_l}}`,

with :math:`t_\times = r\,\sigma(\theta_{p_j} - \theta_{p_l})` (where the
two moving values cross) and K the smallest constant value. Intersecting
these intervals over all observed pseudo-actions gives :math:`[lo, hi]`, and
:math:`\mathbb{E}[\pi_j \mid \cdot] = (lo + hi)/2`. The objective values are
functions of the conditioning variables (the pseudo-actions of v and the
augmentations of the other variables), so replacing :math:`\pi_j` by this
conditional mean is an exact Rao-Blackwellization: unbiased, and per
coordinate never more variance than ARS / ARSM with the same draws.

The symmetry mask (ARS+, ARSM+). A variable v whose pseudo-actions all
agree (event :math:`A_v`, all equal to k) contributes
:math:`\sum_j (F_{cj} - \bar F_j)\,w_j` with :math:`F_{cj} = f(k,
z_{-v}^{c\rightleftharpoons j})` and :math:`w_j` a function of
:math:`\pi_v` only. Each joint pseudo-action of the other variables is an
exact draw from their q, independent of :math:`\pi_v`, so
:math:`\mathbb{E}[F_{cj} \mid \pi_v] = \mathbb{E}_{z_{-v}\sim q} f(k,
z_{-v})` is the same for every (c, j) and the term has zero conditional
mean. Zeroing it is therefore unbiased for any V, and it can only lower the
variance (:math:`\mathrm{Var}(g 1_{A^c}) = \mathrm{Var}(g) - \mathbb{E}[g^2
1_A]` when :math:`\mathbb{E}[g 1_A] = 0`). With V = 1 the term is exactly
zero anyway. Option ``symmetry_mask`` (default True for ARS+) selects it;
False turns it off for ablations.

The per-reference mask (``symmetry_mask='reference'``; the official code's
``arsmp``). ARSM+ sums over references j; the term of (v, j) is
:math:`(F_{cj} - \bar F_j)\,w_{v,j}` with the C pseudo-actions
:math:`z_v^{m\rightleftharpoons j}` of reference j. When those C agree
(event :math:`A_{vj}`, a function of :math:`\pi_v`), the same argument
gives the term zero conditional mean given :math:`\pi_v`, so zeroing it is
unbiased. It masks every term the variable mask masks and more, but it
removes part of a coordinate rather than all of it, so the variance
inequality above does not apply; measured, it lowers the variance on the
shared test problems (docs/estimators.md), hence the default of
``arsm_plus``. For ARS+ (one reference) both masks are the same.
``symmetry_mask`` takes True or ``'variable'`` (the variable mask),
``'reference'``, or False.

Repeated draws (option ``num_draws`` = N of ``ars``, ``arsm`` and their
"+" forms): N independent Dirichlet draws, each with its own pseudo-actions
(and reference indices), the N estimates averaged. The cost is N times the
single draw's (``Cost.repeats``); samples are stacked draw by draw, so
evaluation ``n S + s`` is pseudo-action s of draw n.

Noise. Both schemes (one reference index per variable for ARS/ARS+, all
references for ARSM/ARSM+) record their Dirichlet draw, pseudo-actions and
swaps in a :class:`SwapNoise`.
"""

import dataclasses
import itertools

import numpy as np
import tensorflow as tf

from tf_discrete import _core
from tf_discrete.categorical import _common
from tf_discrete.categorical._common import REGISTRY
from tf_discrete.facts import Cost
from tf_discrete.facts import Estimates
from tf_discrete.facts import Facts
from tf_discrete.facts import Option

#: The "+" estimators' option: zero the contribution of a variable whose
#: pseudo-actions all agree (True / 'variable'; unbiased, never more
#: variance), or of each (variable, reference) whose C pseudo-actions agree
#: ('reference'; unbiased), or nothing (False).
SYMMETRY_MASK = Option(
    "symmetry_mask", default=True, accepted=(True, False, "variable",
                                             "reference"),
    doc="zero the contribution of a variable whose pseudo-actions all agree "
    "(True or 'variable'), of each (variable, reference j) whose C "
    "pseudo-actions for j agree ('reference'), or nothing (False)")

#: ARSM+'s default: the per-reference mask (measured lower variance).
ARSM_PLUS_MASK = dataclasses.replace(SYMMETRY_MASK, default="reference")


def _positive_count(value):
  if isinstance(value, (bool, np.bool_)) or not isinstance(
      value, (int, np.integer)) or value < 1:
    raise ValueError(f"must be a positive int, got {value!r}")
  return int(value)


#: Independent Dirichlet draws averaged (the cost multiplies).
NUM_DRAWS = Option(
    "num_draws", default=1, validate=_positive_count,
    doc="average over this many independent Dirichlet draws; the cost "
    "multiplies")


def _mask_mode(symmetry_mask):
  """'variable', 'reference' or None from the option's canonical value."""
  if symmetry_mask is True or symmetry_mask == "variable":
    return "variable"
  if symmetry_mask == "reference":
    return "reference"
  return None

PAPER = "Yin, Yue, Zhou 2019"


@dataclasses.dataclass(frozen=True)
class SwapNoise:
  r"""Noise of the swap estimators (ARS, ARSM and their "+" variants).

  Attributes:
    log_pi: ``[*batch, V, C]``, log of the Dirichlet(1) draw :math:`\pi_v`.
    pseudo_log_pi: ``[S, *batch, V, C]``; pseudo-action s is
      ``argmin(pseudo_log_pi[s] - theta)``.
    actions: ``[S, *batch, V]`` int32, those argmins.
    swap_a, swap_b: int32 broadcastable to ``[S, *batch, V]``: pseudo-action
      s exchanges positions ``swap_a[s]`` and ``swap_b[s]`` (equal: none).
    ref_j: ``[J, *batch, V]`` int32 reference indices (J = 1 for ARS, one
      drawn per batch element and variable; J = C for ARSM, all of them).
    ref_l: ``[J, *batch, V]`` int32, the partner :math:`l \neq j` whose
      coordinate absorbs a change of :math:`\pi_j` (Rao-Blackwellization).

  With ``num_draws`` = N > 1 the N draws sit on an extra batch axis of size
  N before ``*batch`` (``log_pi``: ``[N, *batch, V, C]``, ``actions``:
  ``[S, N, *batch, V]``, ...), as if the logits had been tiled N times.
  """
  log_pi: tf.Tensor
  pseudo_log_pi: tf.Tensor
  actions: tf.Tensor
  swap_a: tf.Tensor
  swap_b: tf.Tensor
  ref_j: tf.Tensor
  ref_l: tf.Tensor

  def reference_interval(self, theta):
    """:func:`reference_interval` of this draw: ``(lower, upper)``,
    each ``[J, *batch, V]``."""
    return reference_interval(self.log_pi, theta, self.pseudo_log_pi,
                              self.actions, self.swap_a, self.swap_b,
                              self.ref_j, self.ref_l)


def _swap_positions(x, swap_a, swap_b):
  """Where index x lands after exchanging positions a and b."""
  return tf.where(tf.equal(x, swap_a), swap_b,
                  tf.where(tf.equal(x, swap_b), swap_a, x))


def reference_expectation(log_pi, theta, pseudo_log_pi, actions, swap_a,
                          swap_b, ref_j, ref_l):
  r"""Conditional mean of :math:`\pi_j` given the pseudo-actions.

  The mid-point of :func:`reference_interval` (same arguments): given
  :math:`\pi_{-\{j,l\}}`, :math:`\pi_j` is uniform on that interval.
  """
  lower, upper = reference_interval(log_pi, theta, pseudo_log_pi, actions,
                                    swap_a, swap_b, ref_j, ref_l)
  return 0.5 * (lower + upper)


def reference_interval(log_pi, theta, pseudo_log_pi, actions, swap_a,
                       swap_b, ref_j, ref_l):
  r"""Values of :math:`\pi_j` consistent with the observed pseudo-actions.

  Args:
    log_pi: ``[*batch, V, C]`` log Dirichlet(1) draw.
    theta: ``[*batch, V, C]`` logits.
    pseudo_log_pi: ``[S, *batch, V, C]``; pseudo-action s is
      ``argmin(pseudo_log_pi[s] - theta)``.
    actions: ``[S, *batch, V]`` int32, those argmins.
    swap_a, swap_b: int32 broadcastable to ``[S, *batch, V]``: pseudo-action
      s exchanges positions ``swap_a[s]`` and ``swap_b[s]`` (equal: none).
    ref_j, ref_l: ``[J, *batch, V]`` int32, reference index j and the
      partner l != j whose coordinate absorbs the change of :math:`\pi_j`.

  Returns:
    ``(lower, upper)``, each ``[J, *batch, V]``: with every coordinate but
    :math:`\pi_j, \pi_l` and the sum :math:`r = \pi_j + \pi_l` held fixed,
    the pseudo-actions are unchanged exactly for :math:`\pi_j \in [lower,
    upper] \subseteq [0, r]`.
  """
  # Work in [J, *batch, V, S] so the reductions over pseudo-actions run
  # along the minor axis, and never gather at [J, S, ...] size: a position
  # holds j (or l) itself unless the swap of s moved it there.
  pseudo_shape = tf.shape(actions)
  swap_a = tf.broadcast_to(swap_a, pseudo_shape)
  swap_b = tf.broadcast_to(swap_b, pseudo_shape)
  theta_a = _common.leading_to_last(_common.take_last(theta, swap_a))
  theta_b = _common.leading_to_last(_common.take_last(theta, swap_b))
  swap_a, swap_b, actions = (_common.leading_to_last(x)
                             for x in (swap_a, swap_b, actions))

  def position_and_logit(ref):
    """Where ``ref`` sits in each pseudo-action, and the logit there."""
    ref_theta = _common.take_last(theta, ref)[..., tf.newaxis]
    ref = ref[..., tf.newaxis]
    position = _swap_positions(ref, swap_a, swap_b)
    logit = tf.where(tf.equal(ref, swap_a), theta_b,
                     tf.where(tf.equal(ref, swap_b), theta_a, ref_theta))
    return position, logit

  pos_j, theta_j = position_and_logit(ref_j)  # [J, *batch, V, S]
  pos_l, theta_l = position_and_logit(ref_l)

  # K: smallest value among the positions holding neither pi_j nor pi_l.
  # Two positions are excluded, so the three smallest values suffice.
  smallest, where_smallest = _smallest_three(pseudo_log_pi - theta)
  log_k = smallest[2]
  for value, index in zip(smallest[1::-1], where_smallest[1::-1]):
    free = tf.logical_and(tf.not_equal(index, pos_j),
                          tf.not_equal(index, pos_l))
    log_k = tf.where(free, value, log_k)

  log_pj = _common.take_last(log_pi, ref_j)
  log_pl = _common.take_last(log_pi, ref_l)
  r = tf.exp(tf.reduce_logsumexp(tf.stack([log_pj, log_pl]), axis=0))
  r_s = r[..., tf.newaxis]
  crossing = r_s * tf.sigmoid(theta_j - theta_l)
  inc_limit = tf.exp(log_k + theta_j)  # t e^{-theta_pj} < K  <=>  t < this
  dec_limit = r_s - tf.exp(log_k + theta_l)  # (r-t) e^{-theta_pl} < K <=> >
  zero = tf.zeros_like(crossing)
  at_j = tf.equal(actions, pos_j)
  at_l = tf.equal(actions, pos_l)
  lower = tf.where(at_j, zero,
                   tf.where(at_l, tf.maximum(crossing, dec_limit), inc_limit))
  upper = tf.where(at_j, tf.minimum(crossing, inc_limit),
                   tf.where(at_l, r_s + zero, dec_limit))
  lower = tf.clip_by_value(tf.reduce_max(lower, axis=-1), 0.0, r)
  upper = tf.clip_by_value(tf.reduce_min(upper, axis=-1), lower, r)
  return lower, upper


def _smallest_three(values):
  """The three smallest entries of ``values`` ``[S, *batch, V, C]`` along C
  and their positions, each as ``[*batch, V, S]`` (the layout of
  :func:`reference_interval`); +inf at position C where C < 3.

  Three min/argmin passes, because XLA lowers ``top_k`` to a sort on CPU.
  """
  inf = tf.constant(np.inf, values.dtype)
  positions = tf.range(values.shape[-1])
  smallest, where_smallest = [], []
  for _ in range(3):
    index = tf.argmin(values, axis=-1, output_type=tf.int32)
    smallest.append(tf.reduce_min(values, axis=-1))
    where_smallest.append(tf.where(tf.math.is_inf(smallest[-1]),
                                   values.shape[-1], index))
    values = tf.where(tf.equal(positions, index[..., tf.newaxis]), inf,
                      values)
  return ([_common.leading_to_last(x) for x in smallest],
          [_common.leading_to_last(x) for x in where_smallest])


def _all_agree(actions):
  """``[*batch, V]``: True where all pseudo-actions of a variable agree."""
  return tf.reduce_all(tf.equal(actions, actions[:1]), axis=0)


def _dirichlet(logits, seed):
  """theta (work dtype), log pi ``[*batch, V, C]``."""
  theta = _common.to_work(logits)
  log_e = _common.log_exponential(tf.shape(theta), seed, theta.dtype)
  return theta, tf.nn.log_softmax(log_e, axis=-1)


class _SwapScheme(_core.Estimator):
  """Shared by ARS/ARSM and their "+" forms: one or ``num_draws``
  independent Dirichlet draws of a fixed-cost swap scheme."""

  def base_cost(self, logits) -> int:
    """Evaluations of one draw."""
    return self.facts.cost.default_for(logits.shape[-2:].as_list())

  def sample_once(self, logits, seed) -> _core.Draw[SwapNoise]:
    """Pseudo-actions of one Dirichlet draw (batch shape of ``logits``)."""
    raise NotImplementedError

  def gradient_once(self, values, noise, logits, mask):
    """The estimate of one draw; ``mask`` from :func:`_mask_mode`."""
    raise NotImplementedError

  def sample(self, logits, num_samples, seed, num_draws=1, **options
             ) -> _core.Draw[SwapNoise]:
    del options
    base = self.base_cost(logits)
    if num_samples is not None and num_samples != base * num_draws:
      raise ValueError(
          f"Estimator '{self.name}' with `num_draws`={num_draws} evaluates "
          f"the objective {base * num_draws} times, but was asked for "
          f"`num_samples`={num_samples}: resolve the count with the "
          f"options (facts.cost.resolve(..., options=...)).")
    if num_draws == 1:
      return self.sample_once(logits, seed)
    tiled = tf.broadcast_to(logits, tf.concat([[num_draws], tf.shape(logits)],
                                              0))
    draw = self.sample_once(tiled, seed)
    # [S, N, *batch, V, C] -> [N * S, *batch, V, C], draw by draw.
    samples = tf.transpose(
        draw.samples, [1, 0] + list(range(2, draw.samples.shape.rank)))
    samples = tf.reshape(samples, tf.concat([[base * num_draws],
                                             tf.shape(samples)[2:]], 0))
    return _core.Draw(samples, draw.noise)

  def gradient(self, values, draw, logits, num_draws=1, symmetry_mask=False):
    mask = _mask_mode(symmetry_mask)
    if num_draws == 1:
      return self.gradient_once(values, draw.noise, logits, mask)
    # [N * S, *batch] -> [S, N, *batch].
    base = values.shape[0] // num_draws
    per_draw = tf.reshape(values, tf.concat([[num_draws, base],
                                             tf.shape(values)[1:]], 0))
    per_draw = tf.transpose(per_draw,
                            [1, 0] + list(range(2, per_draw.shape.rank)))
    tiled = tf.broadcast_to(logits, tf.concat([[num_draws], tf.shape(logits)],
                                              0))
    grads = self.gradient_once(per_draw, draw.noise, tiled, mask)
    return tf.reduce_mean(grads, axis=0)


# --------------------------------------------------------------------------
# AR.
# --------------------------------------------------------------------------


@REGISTRY.register
class AugmentReinforce(_common.IndependentSamples):
  r"""Augment-REINFORCE (AR) for categoricals.

  .. math:: \hat g_{v,c} = \frac1K \sum_{k=1}^K f(z_k)\,(1 - C\pi_{k,v,c}),
     \quad z_{k,v} = \arg\min_i \pi_{k,v,i} e^{-\theta_{v,i}},
     \quad \pi_{k,v} \sim \mathrm{Dirichlet}(1_C)

  Objective evaluations: K (``num_samples``, default 1; K independent AR
  estimates averaged). Unbiased; usually more variance than REINFORCE. Yin,
  Yue, Zhou, ICML 2019 (Theorem 1).
  """
  name = "ar"
  facts = Facts(estimates=Estimates.MEAN, cost=Cost(default=1),
                unbiased=True, paper=PAPER)

  def gradient(self, values, draw, logits):
    theta = _common.to_work(logits)
    num_categories = _common.num_categories(logits)
    f = tf.cast(values, theta.dtype)[..., tf.newaxis, tf.newaxis]
    grad = tf.reduce_mean(f * (1.0 - num_categories * draw.noise.pi),
                          axis=0)
    return _common.cast_like(grad, logits)


# --------------------------------------------------------------------------
# ARS and ARS+.
# --------------------------------------------------------------------------


class _SingleReference(_SwapScheme):
  """C pseudo-actions: swap (m, j_v) for m = 0..C-1, jointly over variables.

  The reference index j_v is drawn uniformly and independently for every
  batch element and variable (the original code drew one j per batch with
  an unseeded NumPy RNG). Any choice of j independent of pi is unbiased.
  """

  COST = Cost(default=lambda event_shape: int(event_shape[-1]), fixed=True,
              per="pseudo-action", formula="C", repeats="num_draws")

  def sample_once(self, logits, seed) -> _core.Draw[SwapNoise]:
    num_categories = _common.num_categories(logits)
    seed_pi, seed_j, seed_l = _core.split_seed(seed, 3)
    theta, log_pi = _dirichlet(logits, seed_pi)
    rank = theta.shape.rank
    ref_j = _common.uniform_index(tf.shape(theta)[:-1], seed_j, theta.dtype,
                                  num_categories)  # [*batch, V]
    # Partner l != j for the Rao-Blackwellization (ARS+).
    offset = _common.uniform_index(tf.shape(theta)[:-1], seed_l, theta.dtype,
                                   max(num_categories - 1, 1))
    ref_l = tf.math.floormod(ref_j + 1 + offset, num_categories)

    m = tf.reshape(tf.range(num_categories), [num_categories] + [1] * rank)
    position = tf.range(num_categories)
    log_pi_j = _common.take_last(log_pi, ref_j)[tf.newaxis, ..., tf.newaxis]
    log_pi_m = _common.last_to_leading(log_pi)[..., tf.newaxis]
    pseudo = tf.where(
        tf.equal(position, m), log_pi_j,
        tf.where(tf.equal(position, ref_j[tf.newaxis, ..., tf.newaxis]),
                 log_pi_m, log_pi[tf.newaxis]))  # [C, *batch, V, C]
    actions = _common.exponential_race(pseudo, theta)  # [C, *batch, V]
    samples = _common.one_hot(actions, num_categories, logits.dtype)
    return _core.Draw(samples, SwapNoise(
        log_pi=log_pi, pseudo_log_pi=pseudo, actions=actions,
        swap_a=m[..., 0], swap_b=ref_j[tf.newaxis], ref_j=ref_j[tf.newaxis],
        ref_l=ref_l[tf.newaxis]))

  def reference_pi(self, noise: SwapNoise, theta):
    """The ``pi_j`` factor ``[*batch, V]``."""
    return tf.exp(_common.take_last(noise.log_pi, noise.ref_j[0]))

  def gradient_once(self, values, noise, logits, mask):
    """``mask``: the "+" variants' option; ARS never masks. With one
    reference the variable and reference masks coincide."""
    theta = _common.to_work(logits)
    num_categories = _common.num_categories(logits)
    f = tf.cast(values, theta.dtype)  # [C, *batch]
    centred = _common.leading_to_last(f - tf.reduce_mean(f, axis=0))
    weight = 1.0 - num_categories * self.reference_pi(noise, theta)
    if mask is not None:
      weight = tf.where(_all_agree(noise.actions),
                        tf.zeros_like(weight), weight)
    grad = centred[..., tf.newaxis, :] * weight[..., tf.newaxis]
    return _common.cast_like(grad, logits)


@REGISTRY.register
class AugmentReinforceSwap(_SingleReference):
  r"""Augment-REINFORCE-swap (ARS).

  .. math:: \hat g_{v,c} = \Big(f(z^{c\rightleftharpoons j}) - \frac1C
     \sum_{m} f(z^{m\rightleftharpoons j})\Big)(1 - C\pi_{v,j_v})

  with one Dirichlet(1) draw :math:`\pi_v` per variable, a reference index
  :math:`j_v` uniform per batch element and variable, and pseudo-actions
  that swap :math:`(c, j_w)` in every variable w at once
  (:math:`c = j_w` is the true sample). Objective evaluations: C (fixed),
  times ``num_draws`` (option, default 1: independent Dirichlet draws
  averaged).
  Unbiased. Yin, Yue, Zhou, ICML 2019.
  """
  name = "ars"
  facts = Facts(estimates=Estimates.MEAN, cost=_SingleReference.COST,
                unbiased=True, options=(NUM_DRAWS,), paper=PAPER)


@REGISTRY.register
class AugmentReinforceSwapPlus(_SingleReference):
  r"""ARS+: ARS with :math:`\pi_{v,j}` Rao-Blackwellized.

  .. math:: \hat g_{v,c} = \Big(f(z^{c\rightleftharpoons j}) - \frac1C
     \sum_{m} f(z^{m\rightleftharpoons j})\Big)\big(1 - C\,
     \mathbb{E}[\pi_{v,j} \mid \pi_{v,-\{j,l\}}, \{z_v^{m\rightleftharpoons
     j}\}_m]\big)

  The conditional mean is the mid-point of the interval of
  :math:`\pi_{v,j}` (with :math:`\pi_{v,j} + \pi_{v,l}` fixed, l a second
  index drawn uniformly among the others) consistent with the observed
  pseudo-actions (module docstring), and a variable whose C pseudo-actions
  all agree contributes zero (symmetry mask; option ``symmetry_mask``,
  default True; with one reference ``'reference'`` is the same mask).
  Option ``num_draws`` as ARS. Same draws and cost as ARS; unbiased;
  coordinate-wise variance <= ARS (a Rao-Blackwellization followed by
  removing a zero-mean term). Yin, Yue, Zhou, ICML 2019.
  """
  name = "ars_plus"
  facts = Facts(estimates=Estimates.MEAN, cost=_SingleReference.COST,
                unbiased=True, options=(SYMMETRY_MASK, NUM_DRAWS),
                paper=PAPER)

  def reference_pi(self, noise: SwapNoise, theta):
    return reference_expectation(
        noise.log_pi, theta, noise.pseudo_log_pi, noise.actions,
        noise.swap_a, noise.swap_b, noise.ref_j, noise.ref_l)[0]


# --------------------------------------------------------------------------
# ARSM and ARSM+.
# --------------------------------------------------------------------------


def _swap_tables(num_categories):
  """Static tables of the distinct pseudo-actions of ARSM.

  Returns:
    swap_a, swap_b: ``[S]``, pseudo-action s exchanges positions
      ``swap_a[s]``, ``swap_b[s]``; s = 0 is the identity (the true sample).
    permutation: ``[S, C]``, position p of pseudo-action s holds coordinate
      ``permutation[s, p]`` of pi.
    index: ``[C, C]``, ``index[c, j]`` is the s of the swap (c, j); the
      matrix is symmetric with zero diagonal.
  """
  pairs = list(itertools.combinations(range(num_categories), 2))
  swap_a = np.array([0] + [a for a, _ in pairs], np.int32)
  swap_b = np.array([0] + [b for _, b in pairs], np.int32)
  permutation = np.tile(np.arange(num_categories, dtype=np.int32),
                        [len(swap_a), 1])
  index = np.zeros([num_categories, num_categories], np.int32)
  for s, (a, b) in enumerate(pairs, start=1):
    permutation[s, a], permutation[s, b] = b, a
    index[a, b] = index[b, a] = s
  return swap_a, swap_b, permutation, index


def _arsm_evaluations(event_shape):
  c = int(event_shape[-1])
  return c * (c - 1) // 2 + 1


class _AllReferences(_SwapScheme):
  """The C(C-1)/2 + 1 distinct pseudo-actions of all swaps (i, j)."""

  COST = Cost(default=_arsm_evaluations, fixed=True, per="pseudo-action",
              formula="C(C-1)/2 + 1", repeats="num_draws")

  def sample_once(self, logits, seed) -> _core.Draw[SwapNoise]:
    num_categories = _common.num_categories(logits)
    swap_a, swap_b, permutation, _ = _swap_tables(num_categories)
    seed_pi, seed_l = _core.split_seed(seed, 2)
    theta, log_pi = _dirichlet(logits, seed_pi)
    rank = theta.shape.rank
    pseudo = tf.gather(log_pi, permutation, axis=-1)  # [*batch, V, S, C]
    pseudo = tf.transpose(pseudo,
                          [rank - 1] + list(range(rank - 1)) + [rank])
    actions = _common.exponential_race(pseudo, theta)  # [S, *batch, V]
    samples = _common.one_hot(actions, num_categories, logits.dtype)
    # One partner l_j != j per reference j, batch element and variable.
    lead_shape = tf.concat([[num_categories], tf.shape(theta)[:-1]], 0)
    ref_j = tf.broadcast_to(
        tf.reshape(tf.range(num_categories), [num_categories] + [1] * (
            rank - 1)), lead_shape)
    offset = _common.uniform_index(lead_shape, seed_l, theta.dtype,
                                   max(num_categories - 1, 1))
    ref_l = tf.math.floormod(ref_j + 1 + offset, num_categories)
    return _core.Draw(samples, SwapNoise(
        log_pi=log_pi, pseudo_log_pi=pseudo, actions=actions,
        swap_a=_common.reshape_leading(swap_a, rank),
        swap_b=_common.reshape_leading(swap_b, rank), ref_j=ref_j,
        ref_l=ref_l))

  def reference_pi(self, noise: SwapNoise, theta):
    """``[*batch, V, C]``: the pi_j factors."""
    return tf.exp(noise.log_pi)

  def gradient_once(self, values, noise, logits, mask):
    """``mask``: the "+" variants' option; ARSM never masks."""
    theta = _common.to_work(logits)
    num_categories = _common.num_categories(logits)
    _, _, _, index = _swap_tables(num_categories)
    f = tf.cast(values, theta.dtype)  # [S, *batch]
    swap_matrix = tf.gather(f, index, axis=0)  # [C (c), C (j), *batch]
    centred = swap_matrix - tf.reduce_mean(swap_matrix, axis=0)
    centred = _common.leading_to_last(centred, 2)  # [*batch, c, j]
    weight = 1.0 / num_categories - self.reference_pi(noise, theta)
    if mask == "variable":
      weight = tf.where(_all_agree(noise.actions)[..., tf.newaxis],
                        tf.zeros_like(weight), weight)
    elif mask == "reference":
      # The C pseudo-actions of reference j: swaps (c, j), c = 0..C-1.
      by_reference = tf.gather(noise.actions, index, axis=0)  # [c, j, *b, V]
      agree = tf.reduce_all(tf.equal(by_reference, by_reference[:1]), axis=0)
      weight = tf.where(_common.leading_to_last(agree),
                        tf.zeros_like(weight), weight)
    grad = tf.einsum("...cj,...vj->...vc", centred, weight)
    return _common.cast_like(grad, logits)


@REGISTRY.register
class AugmentReinforceSwapMerge(_AllReferences):
  r"""Augment-REINFORCE-swap-merge (ARSM).

  .. math:: \hat g_{v,c} = \sum_{j=1}^C \Big(f(z^{c\rightleftharpoons j}) -
     \frac1C\sum_m f(z^{m\rightleftharpoons j})\Big)\Big(\frac1C -
     \pi_{v,j}\Big)

  i.e. ARS merged over all reference indices. The swap matrix
  :math:`F_{cj} = f(z^{c\rightleftharpoons j})` is symmetric with the true
  sample on the diagonal, so only the identity and the C(C-1)/2 swaps
  :math:`i < j` are evaluated: C(C-1)/2 + 1 objective evaluations (fixed;
  the original code evaluates all C^2), times ``num_draws`` (option,
  default 1: independent Dirichlet draws averaged). Swaps apply to every
  variable at once. Unbiased. Yin, Yue, Zhou, ICML 2019.
  """
  name = "arsm"
  facts = Facts(estimates=Estimates.MEAN, cost=_AllReferences.COST,
                unbiased=True, options=(NUM_DRAWS,), paper=PAPER)


@REGISTRY.register
class AugmentReinforceSwapMergePlus(_AllReferences):
  r"""ARSM+: ARSM with every :math:`\pi_{v,j}` Rao-Blackwellized.

  .. math:: \hat g_{v,c} = \sum_j \Big(F_{cj} - \frac1C\sum_m F_{mj}\Big)
     \Big(\frac1C - \mathbb{E}[\pi_{v,j} \mid \pi_{v,-\{j,l_j\}},
     \text{all pseudo-actions of } v]\Big)

  For each j a partner :math:`l_j \neq j` is drawn; the conditional mean is
  the mid-point of the interval of :math:`\pi_{v,j}` consistent with all
  C(C-1)/2 + 1 pseudo-actions (module docstring). Option
  ``symmetry_mask``: ``'reference'`` (default) zeroes the term of each
  (variable, reference j) whose C pseudo-actions for j agree (unbiased;
  measured lower variance than the variable mask); True or ``'variable'``
  zeroes a variable whose pseudo-actions all agree (unbiased, never more
  variance than no mask); False none. Option ``num_draws`` (default 1):
  average over that many independent Dirichlet draws, cost times that
  many. Same draws and cost as ARSM; unbiased; the Rao-Blackwellization
  alone never adds variance. Yin, Yue, Zhou, ICML 2019.
  """
  name = "arsm_plus"
  facts = Facts(estimates=Estimates.MEAN, cost=_AllReferences.COST,
                unbiased=True, options=(ARSM_PLUS_MASK, NUM_DRAWS),
                paper=PAPER)

  def reference_pi(self, noise: SwapNoise, theta):
    expected = reference_expectation(
        noise.log_pi, theta, noise.pseudo_log_pi, noise.actions,
        noise.swap_a, noise.swap_b, noise.ref_j, noise.ref_l)
    return _common.leading_to_last(expected)  # [*batch, V, C (j)]
