r"""Learned control variates for Bernoulli latents: REBAR, RELAX, double
control variates and RODEO.

All four are unbiased for :math:`\nabla_\theta \mathbb{E}_q[f(b)]` for every
value of their control-variate parameters, need the objective's gradient
with respect to its samples (``facts.needs_objective_gradient``) and carry
control-variate parameters trained to minimise the estimator's variance
(``facts.trainable_state``). Two kinds:

* ``rebar``, ``relax``: one hard sample and the concrete relaxation of its
  noise as control variate (below);
* ``double_cv``, ``rodeo``: K >= 2 independent samples, the leave-one-out
  baseline of ``rloo`` (the same samples at the same seed), and control
  variates built from the objective's values and sample gradients at the
  other samples, so they cost no evaluation beyond RLOO's K (their class
  docstrings give the formulas).

Noise and relaxation (REBAR, RELAX). One open uniform per unit gives the
logistic noise :math:`L = \log(1-u) - \log u`, the perturbed logit :math:`z
= \theta + L` and the hard sample :math:`b = H(z) = 1[z > 0] \sim
\mathrm{Bernoulli}(\sigma(\theta))`. :math:`\tilde z` is drawn from
:math:`z \mid b` (logistic(:math:`\theta`) truncated to the side of b, by
inverse CDF at a fresh uniform :math:`v`,
:func:`._common.conditional_perturbed_logits`), reparameterized so that
:math:`\partial\tilde z/\partial\theta` (v and b held) exists. The
relaxation is :math:`\sigma_\tau(z) = \sigma(z/\tau)`.

Estimator, with a control variate :math:`c_\phi(z)` differentiable in z:

.. math:: \hat g = \big(f(b) - c_\phi(\tilde z)\big)\,(b - \sigma(\theta))
   + \nabla_\theta c_\phi(z) - \nabla_\theta c_\phi(\tilde z),

unbiased for every :math:`\phi` because :math:`\mathbb{E}[c(z)] =
\mathbb{E}_b\,\mathbb{E}[c(\tilde z) \mid b]`. ``rebar``: :math:`c_\phi(z)
= \eta\, f(\sigma_\tau(z))`, :math:`\phi = (\eta, \log\tau)`; ``relax``:
:math:`c_\phi(z) = \eta\, f(\sigma_\tau(z)) + r_\psi(\sigma_\tau(z))` with
:math:`r_\psi` a one-hidden-layer tanh network (a function of z through the
same relaxation, which keeps its input in (0, 1) for any logits),
:math:`\phi = (\eta, \log\tau, \psi)`. The terms :math:`\nabla_\theta
c(\cdot)` are pathwise: :math:`\nabla_y f` (from backprop of the objective
at the relaxed sample) times :math:`\sigma'(z/\tau)/\tau` times
:math:`\partial z/\partial\theta` (1, or :math:`\partial\tilde
z/\partial\theta`). A direct dependence of f on the logits (an ELBO's
:math:`-\log q`) is differentiated pathwise at the hard sample only.

Evaluations. ``rebar``, ``relax``: ``num_samples`` = S >= 3 objective
evaluations, made in ONE batched call on ``[b, σ_τ(z), σ_τ(z̃_1), ...,
σ_τ(z̃_{S-2})]`` stacked on the leading axis: the hard sample, its
relaxation, and S - 2 conditional relaxations whose terms are averaged (S =
3, the default, is the papers' estimator; more conditional draws reduce the
variance of the :math:`\mathbb{E}[c(\tilde z) \mid b]` part). The returned
value is :math:`f(b)` (its pathwise gradient reaches the objective's
variables). ``double_cv``, ``rodeo``: ``num_samples`` = K >= 2 (default 2),
one batched call on the K hard samples; the returned value is the mean of
f over them.

State. The control-variate parameters belong to the caller and come in
through the option ``control_variate``: a mapping (or a ``tf.Module`` with
attributes) from the names of :meth:`state_spec` to tensors or variables;
``get(name).make_state(event_shape)`` builds a ``tf.Module`` of fresh
``tf.Variable`` s, and ``tf_discrete.layers.BernoulliLatent`` creates them
as layer weights in ``build``. ``control_variate=None`` uses the initial
values as constants (an untrained but valid control variate).

Variance gradient. When the value returned is differentiated, the state's
tensors receive (attached with ``tf.custom_gradient``, so one
``tape.gradient(loss, all_variables)`` gives it)

.. math:: \nabla_\phi \sum_{i,d} \big(u_i\,\hat g_{i,d}\big)^2,

with :math:`u_i` the upstream gradient of batch element i: the gradient of
a single-sample estimate of the summed variance of the logits gradient
(:math:`\mathbb{E}[\hat g]` does not depend on :math:`\phi`), as all four
papers train their control variates. For REBAR and RELAX it needs second
derivatives of the objective with respect to its samples (the relaxed
samples depend on :math:`\tau`); for double CV and RODEO the objective's
values and sample gradients do not depend on the state. An optimizer step
that minimises the loss thus minimises this variance for the state's
variables.
"""

import contextlib
import dataclasses
import math
from typing import Dict, Mapping

import numpy as np
import tensorflow as tf

from tf_discrete import _core
from tf_discrete.bernoulli import _common
from tf_discrete.bernoulli._common import REGISTRY
from tf_discrete.bernoulli.relaxation import relaxed_sigmoid
from tf_discrete.bernoulli.relaxation import sigmoid_derivative
from tf_discrete.facts import Cost
from tf_discrete.facts import Estimates
from tf_discrete.facts import Facts
from tf_discrete.facts import Option

#: Initial temperature of the relaxation (REBAR's and RELAX's 0.5).
INITIAL_TEMPERATURE = 0.5
#: Hidden units of RELAX's network r_psi.
RELAX_HIDDEN_UNITS = 16
#: Hidden units of RODEO's control network (the reference code's 100).
RODEO_HIDDEN_UNITS = 100
#: Negative slope of the leaky ReLU of RODEO's control network.
RODEO_LEAKY_SLOPE = 0.3


@dataclasses.dataclass(frozen=True)
class ControlVariateNoise:
  """Noise of REBAR / RELAX.

  Attributes:
    logistic: ``[1, *batch, D]`` (work dtype) logistic noise L; z = θ + L.
    conditional: ``[S - 2, *batch, D]`` (work dtype) open uniforms v of the
      conditional draws z̃ | b.
  """
  logistic: tf.Tensor
  conditional: tf.Tensor


def _state_option(names) -> Option:
  """The ``control_variate`` option of an estimator whose state has the
  tensors ``names``."""

  def validate(value):
    if value is None:
      return None
    if isinstance(value, Mapping):
      found = dict(value)
    else:
      found = {n: getattr(value, n) for n in names if hasattr(value, n)}
    missing = [n for n in names if n not in found]
    extra = sorted(set(found) - set(names))
    if missing or extra:
      raise ValueError(
          f"must be None, or a mapping / tf.Module holding exactly "
          f"{', '.join(names)} (e.g. from `make_state(event_shape)`); "
          f"missing {missing}, unexpected {extra}")
    for name in names:
      if not (hasattr(found[name], "dtype") and hasattr(found[name], "shape")):
        raise TypeError(f"`{name}` must be a tensor or variable, got "
                        f"{found[name]!r}")
    return {n: found[n] for n in names}

  return Option(
      "control_variate", default=None, validate=validate,
      doc="control-variate state (mapping or tf.Module of variables from "
      "make_state); None: its initial values, fixed")


def attach_variance_gradient(value: tf.Tensor, grad: tf.Tensor, phi,
                             state_tape: tf.GradientTape) -> tf.Tensor:
  r"""``value`` whose backprop also sends :math:`\nabla_\phi \sum (u\,\hat
  g)^2` to the state tensors ``phi``.

  Args:
    value: ``[*batch]`` estimate (its own gradients already attached).
    grad: :math:`\hat g`, ``[*batch, *event]``, computed from ``phi`` under
      the persistent ``state_tape``.
    phi: the state tensors, watched by ``state_tape``.
    state_tape: a persistent tape that recorded ``grad``.

  Returns:
    ``value`` unchanged; its upstream gradient u (one per batch element,
    broadcast over the event axes) passes through to whatever ``value``
    depends on, and the state tensors get :math:`\nabla_\phi \sum (u\,\hat
    g)^2`.
  """
  event_rank = grad.shape.rank - value.shape.rank

  @tf.custom_gradient
  def attach(value_in, *state_in):
    del state_in

    def backward(upstream):
      u = tf.cast(upstream, grad.dtype)
      u = tf.reshape(u, tf.concat([tf.shape(u), [1] * event_rank], 0))
      return [upstream] + state_tape.gradient(
          grad, phi, output_gradients=2.0 * tf.square(u) * grad,
          unconnected_gradients=tf.UnconnectedGradients.ZERO)

    return tf.identity(value_in), backward

  return attach(value, *phi)


class _TrainableState(_core.Estimator):
  """An estimator whose control variate has trainable state: the state's
  spec and variables, their validation, one evaluation under a tape that
  records the state, and the attached variance gradient. Subclasses define
  :meth:`state_spec` and :meth:`evaluate_and_estimate`."""

  def state_spec(self, event_shape) -> Dict[str, np.ndarray]:
    """Initial values (float32 arrays) of the state tensors, by name."""
    raise NotImplementedError

  def make_state(self, event_shape, dtype=tf.float32) -> tf.Module:
    """A ``tf.Module`` of fresh trainable variables, one per name of
    :meth:`state_spec` (an attribute of that name), to pass as
    ``control_variate=``."""
    module = tf.Module(name=f"{self.name}_control_variate")
    for name, value in self.state_spec(list(event_shape)).items():
      setattr(module, name, tf.Variable(tf.cast(value, dtype), name=name))
    return module

  def gradient(self, values, draw, logits, control_variate):
    del values, draw, logits, control_variate
    raise NotImplementedError(
        f"Estimator '{self.name}' computes its gradient in "
        f"estimate_with_state (it needs the objective's sample gradient).")

  def _state_tensors(self, control_variate, event_shape):
    """(state tensors by name, whether they come from the caller)."""
    spec = self.state_spec(event_shape)
    if control_variate is None:
      return {n: tf.constant(v) for n, v in spec.items()}, False
    tensors = {}
    for name, value in control_variate.items():
      tensor = tf.convert_to_tensor(value)
      if tensor.shape != spec[name].shape or not tensor.dtype.is_floating:
        raise ValueError(
            f"`control_variate` of estimator '{self.name}': `{name}` must be "
            f"a floating tensor of shape {list(spec[name].shape)} for event "
            f"shape {list(event_shape)}, got shape {tensor.shape} and dtype "
            f"{tensor.dtype}.")
      tensors[name] = tensor
    return tensors, True

  def evaluate_and_estimate(self, objective, theta, draw, expected_shape,
                            state, dtype):
    """Calls the objective once and computes the gradient estimate.

    Runs under the tape that records the state, so everything computed
    from ``state`` is differentiable in it.

    Args:
      objective: the caller's objective.
      theta: ``[*batch, D]`` logits (work dtype, gradient stopped).
      draw: from :meth:`sample`.
      expected_shape: ``[S, *batch]``, the objective's output shape.
      state: the state tensors by name (work dtype).
      dtype: the logits' dtype (of the objective's samples and values).

    Returns:
      ``(values, grad)``: the objective values (dtype ``dtype``, pathwise
      gradients kept) whose mean is the returned estimate, and the
      estimate :math:`\\hat g` ``[*batch, D]`` (work dtype).
    """
    raise NotImplementedError

  def estimate_with_state(self, objective, logits, draw, expected_shape,
                          control_variate):
    dtype = logits.dtype
    work = _common.work_dtype(dtype)
    theta = tf.stop_gradient(tf.cast(logits, work))
    state, trainable = self._state_tensors(control_variate,
                                           logits.shape[-1:].as_list())
    phi = list(state.values())
    state_tape = tf.GradientTape(persistent=True,
                                 watch_accessed_variables=False)
    # A constant state (the initial values) has no gradient to record.
    with state_tape if trainable else contextlib.nullcontext():
      if trainable:
        state_tape.watch(phi)
      params = {n: tf.cast(t, work) for n, t in state.items()}
      values, grad = self.evaluate_and_estimate(
          objective, theta, draw, expected_shape, params, dtype)
    value = _core.attach_gradient(self.value(values, draw), logits,
                                  tf.cast(grad, dtype))
    if not trainable:
      return value
    return attach_variance_gradient(value, grad, phi, state_tape)


class _LearnedControlVariate(_TrainableState):
  """Shared REBAR / RELAX machinery; subclasses define the surrogate r."""

  def state_spec(self, event_shape) -> Dict[str, np.ndarray]:
    """Initial values (float32 arrays) of the state tensors, by name."""
    del event_shape
    return {"eta": np.array(1.0, np.float32),
            "log_temperature": np.array(math.log(INITIAL_TEMPERATURE),
                                        np.float32)}

  def surrogate(self, state, relaxed):
    """r(relaxed) ``[S', *batch]`` for relaxed samples ``[S', *batch, D]``
    (work dtype); None for no surrogate."""
    del state, relaxed
    return None

  def sample(self, logits, num_samples, seed, control_variate):
    del control_variate
    theta = tf.cast(logits, _common.work_dtype(logits.dtype))
    logistic_seed, conditional_seed = _core.split_seed(seed, 2)
    shape = tf.shape(theta)
    logistic = _common.logistic_noise(tf.concat([[1], shape], 0),
                                      logistic_seed, theta.dtype)
    conditional = _common.open_uniform(
        tf.concat([[num_samples - 2], shape], 0), conditional_seed,
        theta.dtype)
    hard = _common.hard_threshold(theta + logistic, logits.dtype)
    return _core.Draw(hard, ControlVariateNoise(logistic, conditional))

  def evaluate_and_estimate(self, objective, theta, draw, expected_shape,
                            state, dtype):
    noise = draw.noise
    hard = tf.cast(draw.samples, theta.dtype)  # [1, *batch, D]
    z = theta + noise.logistic
    # z~ | b and its derivative w.r.t. theta (v and b held); elementwise.
    theta_full = tf.broadcast_to(theta, tf.shape(noise.conditional))
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(theta_full)
      z_tilde = _common.conditional_perturbed_logits(theta_full, hard,
                                                     noise.conditional)
    dz_tilde = tape.gradient(z_tilde, theta_full)
    eta = state["eta"]
    tau = tf.exp(state["log_temperature"])
    relaxed = tf.concat([relaxed_sigmoid(z / tau),
                         relaxed_sigmoid(z_tilde / tau)], 0)
    samples = tf.concat([draw.samples, tf.cast(relaxed, dtype)], 0)
    values, sample_grad = _core.evaluate_with_sample_gradient(
        objective, samples, expected_shape, dtype, self.name)
    f = tf.cast(values, theta.dtype)
    c = eta * f[1:]  # c(z), c(z~_m): [S - 1, *batch]
    dc = eta * tf.cast(sample_grad, theta.dtype)[1:]  # w.r.t. the relaxed
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(relaxed)
      r = self.surrogate(state, relaxed)
    if r is not None:
      c += r
      dc += tape.gradient(r, relaxed)
    jacobian_z = sigmoid_derivative(z[0] / tau) / tau
    jacobian_tilde = sigmoid_derivative(z_tilde / tau) / tau * dz_tilde
    score = hard[0] - tf.sigmoid(theta)
    dtheta = ((f[0] - tf.reduce_mean(c[1:], 0))[..., tf.newaxis] * score
              + dc[0] * jacobian_z
              - tf.reduce_mean(dc[1:] * jacobian_tilde, 0))
    return values[:1], dtheta


class _SampleGradientControlVariate(_TrainableState,
                                    _common.IndependentSamples):
  """Double CV / RODEO machinery: K independent samples (``rloo``'s at the
  same seed), f and its sample gradient at them from one batched call;
  subclasses define :meth:`combine`."""

  def sample(self, logits, num_samples, seed, control_variate):
    del control_variate
    return super().sample(logits, num_samples, seed)

  def combine(self, f, grad_f, samples, theta, state):
    """The gradient estimate ``[*batch, D]`` from the values ``f`` ``[K,
    *batch]``, their sample gradients ``grad_f`` and the ``samples`` ``[K,
    *batch, D]`` (all work dtype, constant), the logits and the state."""
    raise NotImplementedError

  def evaluate_and_estimate(self, objective, theta, draw, expected_shape,
                            state, dtype):
    values, sample_grad = _core.evaluate_with_sample_gradient(
        objective, draw.samples, expected_shape, dtype, self.name)
    work = theta.dtype
    return values, self.combine(
        tf.stop_gradient(tf.cast(values, work)),
        tf.stop_gradient(tf.cast(sample_grad, work)),
        tf.cast(draw.samples, work), theta, state)


def _leave_one_out_score(values, baselines, score):
  r""":math:`\frac1K \sum_k \big(v_k - \frac{1}{K-1}\sum_{j \ne k}
  c_j\big)\,s_k`: RLOO's term with the learning signals ``values`` ``[K,
  *batch]`` and the baseline terms ``baselines`` (``values`` for RLOO)."""
  signal = values - _core.leave_one_out_mean(baselines)
  return tf.reduce_mean(signal[..., tf.newaxis] * score, axis=0)


_PAPERS = {"rebar": "Tucker et al. 2017", "relax": "Grathwohl et al. 2018"}
_COST = Cost(default=3, minimum=3, per="evaluation")


@REGISTRY.register
class Rebar(_LearnedControlVariate):
  r"""REBAR: REINFORCE with the concrete relaxation as control variate.

  .. math:: \hat g = \big(f(b) - \eta f(\sigma_\tau(\tilde z))\big)
     (b - \sigma(\theta)) + \eta\,\nabla_\theta f(\sigma_\tau(z))
     - \eta\,\nabla_\theta f(\sigma_\tau(\tilde z)),

  :math:`z = \theta + L`, :math:`b = 1[z > 0]`, :math:`\tilde z \sim z
  \mid b` (module docstring), with S - 2 conditional draws averaged when
  ``num_samples`` = S > 3. Trainable state (option ``control_variate``):
  the scalar scale ``eta`` (initially 1) and ``log_temperature`` (initially
  log 0.5), trained on the gradient of the single-sample variance estimate
  :math:`\sum (u\,\hat g)^2`.

  Cost: S >= 3 evaluations (default 3: f(b), f(σ_τ(z)), f(σ_τ(z̃))), one
  batched call. Bias: none, for every value of the state. The objective
  must be differentiable in its samples and defined on [0, 1]^D. Tucker,
  Mnih, Maddison, Lawson, Sohl-Dickstein, "REBAR: low-variance, unbiased
  gradient estimates for discrete latent variable models", NeurIPS 2017.
  """
  name = "rebar"
  facts = Facts(estimates=Estimates.MEAN, cost=_COST, unbiased=True,
                needs_objective_gradient=True, trainable_state=True,
                options=(_state_option(("eta", "log_temperature")),),
                paper=_PAPERS["rebar"])


@REGISTRY.register
class Relax(_LearnedControlVariate):
  r"""RELAX with the REBAR surrogate plus a learned network.

  .. math:: c_\phi(z) = \eta\, f(\sigma_\tau(z)) + r_\psi(\sigma_\tau(z)),
     \qquad r_\psi(y) = w_2^\top \tanh(W_1^\top (2y - 1) + b_1) + b_2,

  .. math:: \hat g = \big(f(b) - c_\phi(\tilde z)\big)(b - \sigma(\theta))
     + \nabla_\theta c_\phi(z) - \nabla_\theta c_\phi(\tilde z).

  Trainable state (option ``control_variate``): ``eta`` (initially 1),
  ``log_temperature`` (initially log 0.5), ``hidden_kernel`` ``[D, 16]``
  (fixed pseudo-random initial values, scale 1/sqrt(D)), ``hidden_bias``
  ``[16]``, ``output_kernel`` ``[16]`` and ``output_bias`` ``[]`` (zeros,
  so the untrained estimator is REBAR's); all trained on the gradient of
  the single-sample variance estimate :math:`\sum (u\,\hat g)^2`. The
  constant ``output_bias`` acts as a learned baseline.

  Cost: S >= 3 evaluations (default 3), one batched call, as ``rebar``
  (r is evaluated by the estimator, not the objective). Bias: none. The
  objective must be differentiable in its samples. Grathwohl, Choi, Wu,
  Roeder, Duvenaud, "Backpropagation through the void: optimizing control
  variates for black-box gradient estimation", ICLR 2018.
  """
  name = "relax"
  facts = Facts(estimates=Estimates.MEAN, cost=_COST, unbiased=True,
                needs_objective_gradient=True, trainable_state=True,
                options=(_state_option(
                    ("eta", "log_temperature", "hidden_kernel", "hidden_bias",
                     "output_kernel", "output_bias")),),
                paper=_PAPERS["relax"])

  def state_spec(self, event_shape):
    (units,) = event_shape
    spec = super().state_spec(event_shape)
    rng = np.random.RandomState(0)
    spec.update(
        hidden_kernel=(rng.randn(units, RELAX_HIDDEN_UNITS)
                       / math.sqrt(units)).astype(np.float32),
        hidden_bias=np.zeros([RELAX_HIDDEN_UNITS], np.float32),
        output_kernel=np.zeros([RELAX_HIDDEN_UNITS], np.float32),
        output_bias=np.array(0.0, np.float32))
    return spec

  def surrogate(self, state, relaxed):
    hidden = tf.tanh(tf.tensordot(2.0 * relaxed - 1.0, state["hidden_kernel"],
                                  [[-1], [0]]) + state["hidden_bias"])
    return (tf.tensordot(hidden, state["output_kernel"], [[-1], [0]])
            + state["output_bias"])


@REGISTRY.register
class DoubleControlVariate(_SampleGradientControlVariate):
  r"""Double control variates: RLOO plus a Taylor-expansion control variate.

  With :math:`s_k = b_k - \sigma(\theta)`, :math:`\nabla f_k = \nabla_b
  f(b_k)`, the leave-one-out gradient :math:`\bar g_{-k} = \frac{1}{K-1}
  \sum_{j \neq k} \nabla f_j` and the mean gradient :math:`\bar g =
  \frac1K \sum_k \nabla f_k`:

  .. math:: F_k = f(b_k) - \alpha\,\bar g_{-k}^\top s_k,

  .. math:: \hat g = \frac1K \sum_k \Big(F_k - \frac{1}{K-1} \sum_{j \neq k}
     F_j\Big)\, s_k + \alpha\,\bar g \odot \sigma(\theta)\sigma(-\theta).

  :math:`\bar g_{-k}^\top s_k` is the first-order Taylor expansion of f
  around the mean :math:`\sigma(\theta)` (less its constant), with the
  gradient at the mean replaced by the average gradient at the other
  samples, so no evaluation at the mean is needed; it is the second
  control variate, applied to the learning signal and to the leave-one-out
  baseline alike, and the last term adds back its expectation
  :math:`\mathbb{E}[\bar g_{-k}^\top s_k\, s_k] = \mathbb{E}[\nabla f]
  \odot \sigma(\theta)\sigma(-\theta)`, estimated by :math:`\bar g`.
  Trainable state (option ``control_variate``): the scalar ``alpha``
  (initially 0, as in the reference code: the untrained estimator is
  RLOO), trained on the gradient of the single-sample variance estimate
  :math:`\sum (u\,\hat g)^2`.

  Cost: K >= 2 evaluations (default 2), one batched call on the K samples
  (the same as ``rloo``'s at the same seed), plus the objective's
  gradient with respect to them. Bias: none, for every value of alpha (the
  baseline of sample k and :math:`\bar g_{-k}` do not depend on
  :math:`b_k`). The objective must be differentiable in its samples.
  Titsias & Shi, "Double control variates for gradient estimation in
  discrete latent variable models", AISTATS 2022.
  """
  name = "double_cv"
  facts = Facts(estimates=Estimates.MEAN, cost=Cost(default=2, minimum=2),
                unbiased=True, needs_objective_gradient=True,
                trainable_state=True,
                options=(_state_option(("alpha",)),),
                paper="Titsias & Shi 2022")

  def state_spec(self, event_shape):
    del event_shape
    return {"alpha": np.array(0.0, np.float32)}

  def combine(self, f, grad_f, samples, theta, state):
    alpha = state["alpha"]
    score = _common.score(samples, theta)
    taylor = tf.reduce_sum(_core.leave_one_out_mean(grad_f) * score, -1)
    adjusted = f - alpha * taylor
    return (_leave_one_out_score(adjusted, adjusted, score)
            + alpha * tf.reduce_mean(grad_f, 0) * sigmoid_derivative(theta))


@REGISTRY.register
class Rodeo(_SampleGradientControlVariate):
  r"""RODEO: RLOO with control variates from a discrete Stein operator.

  The Stein operator of the random-scan Gibbs sampler of q (pick a unit i
  uniformly, redraw it from :math:`q(x_i)`),

  .. math:: (\mathcal{A} h)(x) = \frac1D \sum_{i=1}^D q(\neg x_i)\,
     \big(h(x^{(i)}) - h(x)\big), \qquad q(\neg x_i) = \sigma((1 - 2x_i)
     \theta_i),

  (:math:`x^{(i)}`: x with unit i flipped) has :math:`\mathbb{E}_q[
  (\mathcal{A} h)(x)] = 0` for every h. With :math:`s(x) = x -
  \sigma(\theta)`, the control network :math:`N(t, v) = W_2^\top
  \mathrm{LeakyReLU}_{0.3}(w_t t + w_v v + c_1) + c_2 \in \mathbb{R}^2`
  and the surrogate inputs of the other samples (the first-order Taylor
  expansion of f around :math:`b_j`, less its constant, and :math:`f(b_j)`)

  .. math:: (h_k, \tilde h_k)(x) = \frac{1}{K-1} \sum_{j \neq k}
     N\big(\nabla f(b_j)^\top (x - b_j),\ f(b_j)\big),
     \qquad H_k(x) = \tilde h_k(x)\, s(x),

  the estimator is

  .. math:: \hat g = \frac1K \sum_k \Big[\Big(f(b_k) - \frac{1}{K-1}
     \sum_{j \neq k} \big(f(b_j) + \alpha\,(\mathcal{A} h_j)(b_j)\big)\Big)
     s(b_k) + \beta\,(\mathcal{A} H_k)(b_k)\Big].

  The paper's two forms: for K = 2 the control functions of a sample come
  from the one other sample; for K >= 3 the network's outputs are averaged
  over the K - 1 others (the reference code's output averaging). Both
  Stein terms have zero mean given the other samples, as :math:`h_j,
  H_k` do not depend on :math:`b_j, b_k`: the estimator is RLOO plus
  zero-mean control variates. Evaluating :math:`\mathcal{A}` needs the
  network at the D neighbours of each sample, not the objective.

  Trainable state (option ``control_variate``): the scalars ``alpha`` and
  ``beta`` (initially 0, as in the reference code: the untrained estimator
  is RLOO), ``hidden_kernel`` ``[2, 100]`` (rows :math:`w_t, w_v`),
  ``hidden_bias`` ``[100]``, ``output_kernel`` ``[100, 2]``,
  ``output_bias`` ``[2]`` (kernels Glorot-uniform with fixed pseudo-random
  values, biases zero); all trained on the gradient of the single-sample
  variance estimate :math:`\sum (u\,\hat g)^2`.

  Cost: K >= 2 evaluations (default 2), one batched call on the K samples
  (the same as ``rloo``'s at the same seed), plus the objective's gradient
  with respect to them; the network runs on K(K - 1)(D + 1) inputs per
  batch element. Bias: none, for every value of the state. The objective
  must be differentiable in its samples. Shi, Zhou, Hwang, Titsias, Mackey,
  "Gradient estimation with discrete Stein operators", NeurIPS 2022.
  """
  name = "rodeo"
  facts = Facts(estimates=Estimates.MEAN, cost=Cost(default=2, minimum=2),
                unbiased=True, needs_objective_gradient=True,
                trainable_state=True,
                options=(_state_option(
                    ("alpha", "beta", "hidden_kernel", "hidden_bias",
                     "output_kernel", "output_bias")),),
                paper="Shi et al. 2022")

  def state_spec(self, event_shape):
    del event_shape
    rng = np.random.RandomState(0)

    def glorot(fan_in, fan_out):
      limit = math.sqrt(6.0 / (fan_in + fan_out))
      return rng.uniform(-limit, limit, [fan_in, fan_out]).astype(np.float32)

    units = RODEO_HIDDEN_UNITS
    # Each input row as its own one-input dense layer (the reference's).
    hidden_kernel = np.concatenate([glorot(1, units), glorot(1, units)])
    return {"alpha": np.array(0.0, np.float32),
            "beta": np.array(0.0, np.float32),
            "hidden_kernel": hidden_kernel,
            "hidden_bias": np.zeros([units], np.float32),
            "output_kernel": glorot(units, 2),
            "output_bias": np.zeros([2], np.float32)}

  def control_network(self, state, linear, value):
    """N(t, v) ``[..., 2]`` for inputs t ``[...]`` and v (broadcast to
    t's shape)."""
    # One product with the bias folded in: the hidden layer is the largest
    # tensor of the estimator, and the fewer copies of it the better.
    inputs = tf.stack([linear, tf.broadcast_to(value, tf.shape(linear)),
                       tf.ones_like(linear)], -1)
    kernel = tf.concat([state["hidden_kernel"],
                        state["hidden_bias"][tf.newaxis]], 0)
    hidden = tf.nn.leaky_relu(tf.tensordot(inputs, kernel, [[-1], [0]]),
                              alpha=RODEO_LEAKY_SLOPE)
    return (tf.tensordot(hidden, state["output_kernel"], [[-1], [0]])
            + state["output_bias"])

  def combine(self, f, grad_f, samples, theta, state):
    k = samples.shape[0]
    # others[k]: the indices j != k, so row k gathers the other samples.
    others = np.array([[j for j in range(k) if j != i] for i in range(k)])
    grad_o, samples_o, f_o = (tf.gather(t, others)
                              for t in (grad_f, samples, f))  # [K, K-1, ...]
    flip = 1.0 - 2.0 * samples  # x^(i) - x, along unit i
    # Taylor inputs at x = b_k ([..., 0]) and its D neighbours ([..., 1:]).
    at_x = tf.reduce_sum(grad_o * (samples[:, tf.newaxis] - samples_o), -1)
    linear = tf.concat([at_x[..., tf.newaxis],
                        at_x[..., tf.newaxis] + grad_o * flip[:, tf.newaxis]],
                       -1)  # [K, K-1, *batch, D+1]
    h = tf.reduce_mean(
        self.control_network(state, linear, f_o[..., tf.newaxis]), 1)
    h_x, h_neighbours = h[..., :1, :], h[..., 1:, :]  # [K, *batch, ., 2]
    weight = tf.sigmoid(flip * theta)  # q(not x_i)
    difference = weight * (h_neighbours - h_x)[..., 0]  # [K, *batch, D]
    stein_baseline = tf.reduce_mean(difference, -1)  # (A h_k)(b_k)
    score = _common.score(samples, theta)
    # (A H_k)(b_k)_d: every flip changes h~, only the flip of d changes s_d.
    d_tilde = weight * (h_neighbours - h_x)[..., 1]
    stein_score = (score * tf.reduce_sum(d_tilde, -1, keepdims=True)
                   + weight * h_neighbours[..., 1] * flip) / samples.shape[-1]
    return (_leave_one_out_score(f, f + state["alpha"] * stein_baseline,
                                 score)
            + state["beta"] * tf.reduce_mean(stein_score, 0))
