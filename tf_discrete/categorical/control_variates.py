r"""Learned control variates for categorical latents: REBAR and RELAX.

The categorical versions of :mod:`tf_discrete.bernoulli.control_variates`
(same state, options, cost and training of the state; only the noise, the
relaxation and the score differ). Both are unbiased for
:math:`\nabla_\theta \mathbb{E}_q[f(b)]`, need the objective's gradient with
respect to its samples (``facts.needs_objective_gradient``) and carry
control-variate parameters trained to minimise the estimator's variance
(``facts.trainable_state``).

Noise and relaxation, per variable (logits :math:`\theta \in
\mathbb{R}^C`, :math:`p = \mathrm{softmax}\,\theta`). The exponential race
of the other categorical estimators: :math:`E_c \sim \mathrm{Exp}(1)`, the
perturbed logits :math:`z = \theta - \log E = \theta + G` (G standard
Gumbel) and the hard sample :math:`b = \mathrm{onehot}(k)`, :math:`k =
\arg\max_c z_c \sim \mathrm{Cat}(p)` (the Gumbel-max trick, as
``gumbel_softmax``). :math:`\tilde z` is drawn from :math:`z \mid b` with fresh
:math:`\tilde E \sim \mathrm{Exp}(1)` (Tucker et al. 2017, appendix;
Grathwohl et al. 2018, appendix; :func:`._common.race_given_winner`): the
maximum of the race is Gumbel with location :math:`\log Z`, :math:`Z =
\sum_c e^{\theta_c}`, independent of k, and the others are Gumbels
truncated below it,

.. math:: \tilde z_k = \log Z - \log\tilde E_k, \qquad
   \tilde z_i = -\log\big(\tilde E_i e^{-\theta_i} + e^{-\tilde z_k}\big)
   \quad (i \neq k),

(with :math:`\tilde E = -\log v` this is the papers' :math:`\tilde z_i =
-\log(-\log v_i / p_i - \log v_k)` up to the common shift
:math:`\log Z`, which the softmax ignores), evaluated in log space: finite
for any finite logits. It is reparameterized in :math:`\theta` (:math:`\tilde
E` and b held); with :math:`w_i = e^{\tilde z_i - \tilde z_k} \in (0, 1]`
(:math:`w_k = 1`) its Jacobian is :math:`\partial\tilde z_i/\partial\theta_j
= w_i p_j + (1 - w_i)\,\delta_{ij}`, applied in closed form
(:func:`conditional_vjp`). The relaxation is the Concrete sample
:math:`\sigma_\tau(z) = \mathrm{softmax}(z/\tau)` on the simplex.

Estimator, with a control variate :math:`c_\phi(z)` differentiable in z:

.. math:: \hat g = \big(f(b) - c_\phi(\tilde z)\big)\,(b - p)
   + \nabla_\theta c_\phi(z) - \nabla_\theta c_\phi(\tilde z),

for every variable (:math:`b - p = \nabla_\theta\log q(b)`), unbiased for
every :math:`\phi` because :math:`\mathbb{E}[c(z)] =
\mathbb{E}_b\,\mathbb{E}[c(\tilde z) \mid b]`. ``rebar``: :math:`c_\phi(z)
= \eta\, f(\sigma_\tau(z))`, :math:`\phi = (\eta, \log\tau)`; ``relax``:
:math:`c_\phi(z) = \eta\, f(\sigma_\tau(z)) + r_\psi(\sigma_\tau(z))` with
:math:`r_\psi` the network of Bernoulli RELAX on the V·C relaxed
coordinates flattened, :math:`\phi = (\eta, \log\tau, \psi)`. The terms
:math:`\nabla_\theta c(\cdot)` are pathwise: :math:`\nabla_y c` (from
backprop of the objective at the relaxed sample) through the softmax
Jacobian :math:`\tau^{-1}(\mathrm{diag}\,y - yy^\top)`, then through
:math:`\partial z/\partial\theta` (the identity, or the Jacobian of
:math:`\tilde z` above). A direct dependence of f on the logits (an ELBO's
:math:`-\log q`) is differentiated pathwise at the hard sample only.

Evaluations. ``num_samples`` = S >= 3 objective evaluations, made in ONE
batched call on ``[b, σ_τ(z), σ_τ(z̃_1), ..., σ_τ(z̃_{S-2})]`` stacked on
the leading axis, as for Bernoulli latents (S = 3, the default, is the
papers' estimator; further conditional draws are averaged). The returned
value is :math:`f(b)`.

State, and the gradient it receives (:math:`\nabla_\phi \sum (u\,\hat
g)^2`, u the upstream gradient of each batch element: a single-sample
estimate of the summed variance of the logits gradient), exactly as in
:mod:`tf_discrete.bernoulli.control_variates`, whose machinery runs these
estimators on the V·C logits of each batch element flattened (the state
depends on V·C only): option ``control_variate``,
``get(name).make_state(event_shape)`` with ``event_shape = [V, C]``, and
``tf_discrete.layers.CategoricalLatent`` creating it as layer weights.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from tf_discrete import _core
from tf_discrete.bernoulli import control_variates as bernoulli_cv
from tf_discrete.categorical import _common
from tf_discrete.categorical._common import REGISTRY
from tf_discrete.categorical.relaxation import softmax_vjp
from tf_discrete.facts import Estimates
from tf_discrete.facts import Facts

# The network r_psi of Bernoulli RELAX, applied to flattened relaxations.
_NETWORK = bernoulli_cv.Relax()


@dataclasses.dataclass(frozen=True)
class ControlVariateNoise:
  r"""Noise of categorical REBAR / RELAX.

  Attributes:
    log_e: ``[1, *batch, V, C]`` (work dtype) :math:`\log E`; z = θ - log E.
    index: ``[1, *batch, V]`` int32, the hard sample (argmax of z).
    conditional: ``[S - 2, *batch, V, C]`` (work dtype) fresh
      :math:`\log\tilde E` of the conditional draws z̃ | b.
  """
  log_e: tf.Tensor
  index: tf.Tensor
  conditional: tf.Tensor


def conditional_vjp(z_tilde: tf.Tensor, theta: tf.Tensor,
                    upstream: tf.Tensor) -> tf.Tensor:
  r""":math:`(\partial\tilde z/\partial\theta)^\top g` for :math:`\tilde z`
  from :func:`._common.race_given_winner` (noise and winner held).

  With :math:`w = e^{\tilde z - \max\tilde z}` (the winner is the maximum,
  :math:`w_k = 1`): :math:`\partial\tilde z_i/\partial\theta_j = w_i p_j +
  (1 - w_i)\delta_{ij}`, so the product is :math:`p\,\langle w, g\rangle +
  (1 - w) \odot g` over the last axis.

  Args:
    z_tilde: ``[*lead, *batch, V, C]`` conditional perturbed logits.
    theta: ``[*batch, V, C]`` logits.
    upstream: g, shaped like ``z_tilde``.
  """
  log_w = z_tilde - tf.reduce_max(z_tilde, axis=-1, keepdims=True)
  probs = tf.nn.softmax(theta, axis=-1)
  return (probs * tf.reduce_sum(tf.exp(log_w) * upstream, -1, keepdims=True)
          - tf.math.expm1(log_w) * upstream)


def _surrogate_and_gradient(surrogate, state, relaxed):
  """``surrogate(state, relaxed)`` and its gradient w.r.t. ``relaxed``;
  zeros when the estimator has no surrogate (None)."""
  with tf.GradientTape(watch_accessed_variables=False) as tape:
    tape.watch(relaxed)
    r = surrogate(state, relaxed)
  if r is None:
    return 0.0, 0.0
  return r, tape.gradient(r, relaxed)


def _facts(bernoulli_estimator) -> Facts:
  """The facts of a Bernoulli REBAR / RELAX class hold for its categorical
  version: the same cost, options and paper."""
  facts = bernoulli_estimator.facts
  return Facts(estimates=Estimates.MEAN, cost=facts.cost, unbiased=True,
               needs_objective_gradient=True, trainable_state=True,
               options=facts.options, paper=facts.paper)


# pylint: disable-next=protected-access
class _LearnedControlVariate(bernoulli_cv._LearnedControlVariate):
  """Categorical REBAR / RELAX: the Bernoulli machinery (state spec,
  ``make_state``, state validation, evaluation under the state's tape, the
  variance gradient) with the categorical noise, relaxation and score."""

  def sample(self, logits, num_samples, seed, control_variate):
    del control_variate
    theta = _common.to_work(logits)
    race_seed, conditional_seed = _core.split_seed(seed, 2)
    shape = tf.shape(theta)
    log_e = _common.log_exponential(tf.concat([[1], shape], 0), race_seed,
                                    theta.dtype)
    index = _common.exponential_race(log_e, theta)
    conditional = _common.log_exponential(
        tf.concat([[num_samples - 2], shape], 0), conditional_seed,
        theta.dtype)
    hard = _common.one_hot(index, _common.num_categories(logits),
                           logits.dtype)
    return _core.Draw(hard, ControlVariateNoise(log_e, index, conditional))

  def estimate_with_state(self, objective, logits, draw, expected_shape,
                          control_variate):
    # The shared machinery handles ``[*batch, D]`` logits: it gets the V·C
    # logits of each batch element flattened (the state's spec depends on
    # V·C only), and :meth:`evaluate_and_estimate` restores [V, C].
    size = int(np.prod(logits.shape[-2:]))
    flat = tf.reshape(logits, tf.concat([tf.shape(logits)[:-2], [size]], 0))
    return super().estimate_with_state(objective, flat, draw, expected_shape,
                                       control_variate)

  def evaluate_and_estimate(self, objective, theta, draw, expected_shape,
                            state, dtype):
    flat_shape = tf.shape(theta)
    theta = tf.reshape(theta, tf.shape(draw.samples)[1:])  # [*batch, V, C]
    noise = draw.noise
    z = theta - noise.log_e
    z_tilde = _common.race_given_winner(noise.conditional, theta,
                                        noise.index)
    perturbed = tf.concat([z, z_tilde], 0)  # [S - 1, *batch, V, C]
    # The softmax ignores a shift per variable; without the maximum, the
    # temperature's derivative would multiply rounding errors by |z| ~ θ.
    perturbed -= tf.reduce_max(perturbed, axis=-1, keepdims=True)
    tau = tf.exp(state["log_temperature"])
    relaxed = tf.nn.softmax(perturbed / tau, axis=-1)
    values, sample_grad = _core.evaluate_with_sample_gradient(
        objective, tf.concat([draw.samples, tf.cast(relaxed, dtype)], 0),
        expected_shape, dtype, self.name)
    f = tf.cast(values, theta.dtype)
    r, dr = _surrogate_and_gradient(self.surrogate, state, relaxed)
    c = state["eta"] * f[1:] + r  # c(z), c(z~_m): [S - 1, *batch]
    dc = state["eta"] * tf.cast(sample_grad, theta.dtype)[1:] + dr
    dc_dz = softmax_vjp(relaxed, dc) / tau  # d c / d z, d c / d z~_m
    signal = f[0] - tf.reduce_mean(c[1:], 0)
    hard = tf.cast(draw.samples[0], theta.dtype)
    dtheta = (signal[..., tf.newaxis, tf.newaxis] * _common.score(hard, theta)
              + dc_dz[0]
              - tf.reduce_mean(conditional_vjp(z_tilde, theta, dc_dz[1:]), 0))
    return values[:1], tf.reshape(dtheta, flat_shape)


@REGISTRY.register
class Rebar(_LearnedControlVariate):
  r"""REBAR for categorical latents: REINFORCE with the Concrete relaxation
  as control variate.

  .. math:: \hat g = \big(f(b) - \eta f(\sigma_\tau(\tilde z))\big)(b - p)
     + \eta\,\nabla_\theta f(\sigma_\tau(z))
     - \eta\,\nabla_\theta f(\sigma_\tau(\tilde z)),

  per variable, :math:`z = \theta + G`, :math:`b =
  \mathrm{onehot}(\arg\max z)`, :math:`p = \mathrm{softmax}\,\theta`,
  :math:`\sigma_\tau(z) = \mathrm{softmax}(z/\tau)`, :math:`\tilde z \sim z
  \mid b` reparameterized in :math:`\theta` (module docstring), with S - 2
  conditional draws averaged when ``num_samples`` = S > 3. Trainable state
  (option ``control_variate``): the scalar scale ``eta`` (initially 1) and
  ``log_temperature`` (initially log 0.5), trained on the gradient of the
  single-sample variance estimate :math:`\sum (u\,\hat g)^2`.

  Cost: S >= 3 evaluations (default 3: f(b), f(σ_τ(z)), f(σ_τ(z̃))), one
  batched call. Bias: none, for every value of the state. The objective
  must be differentiable in its samples and defined on the simplex.
  Tucker, Mnih, Maddison, Lawson, Sohl-Dickstein, "REBAR: low-variance,
  unbiased gradient estimates for discrete latent variable models",
  NeurIPS 2017 (categorical case: its appendix).
  """
  name = "rebar"
  facts = _facts(bernoulli_cv.Rebar)


@REGISTRY.register
class Relax(_LearnedControlVariate):
  r"""RELAX for categorical latents: the REBAR surrogate plus a learned
  network.

  .. math:: c_\phi(z) = \eta\, f(\sigma_\tau(z)) + r_\psi(\sigma_\tau(z)),
     \qquad r_\psi(y) = w_2^\top \tanh(W_1^\top (2\,\mathrm{vec}(y) - 1)
     + b_1) + b_2,

  .. math:: \hat g = \big(f(b) - c_\phi(\tilde z)\big)(b - p)
     + \nabla_\theta c_\phi(z) - \nabla_\theta c_\phi(\tilde z),

  notation of ``rebar``; :math:`\mathrm{vec}(y)` flattens the V relaxed
  one-hot vectors into V·C coordinates. Trainable state (option
  ``control_variate``): ``eta`` (initially 1), ``log_temperature``
  (initially log 0.5), ``hidden_kernel`` ``[V·C, 16]`` (fixed
  pseudo-random initial values, scale 1/sqrt(V·C)), ``hidden_bias``
  ``[16]``, ``output_kernel`` ``[16]`` and ``output_bias`` ``[]`` (zeros,
  so the untrained estimator is REBAR's); all trained on the gradient of
  the single-sample variance estimate :math:`\sum (u\,\hat g)^2`.

  Cost: S >= 3 evaluations (default 3), one batched call, as ``rebar``
  (r is evaluated by the estimator, not the objective). Bias: none. The
  objective must be differentiable in its samples. Grathwohl, Choi, Wu,
  Roeder, Duvenaud, "Backpropagation through the void: optimizing control
  variates for black-box gradient estimation", ICLR 2018 (categorical
  case: its appendix).
  """
  name = "relax"
  facts = _facts(bernoulli_cv.Relax)

  def state_spec(self, event_shape):
    return _NETWORK.state_spec([int(np.prod(event_shape))])

  def surrogate(self, state, relaxed):
    size = int(np.prod(relaxed.shape[-2:]))
    flat = tf.reshape(relaxed, tf.concat([tf.shape(relaxed)[:-2], [size]], 0))
    return _NETWORK.surrogate(state, flat)
