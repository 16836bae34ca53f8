r"""Learned control variates for Bernoulli latents: REBAR and RELAX.

Both are unbiased for :math:`\nabla_\theta \mathbb{E}_q[f(b)]`, need the
objective's gradient with respect to its samples
(``facts.needs_objective_gradient``) and carry control-variate parameters
trained to minimise the estimator's variance (``facts.trainable_state``).

Noise and relaxation. One open uniform per unit gives the logistic noise
:math:`L = \log(1-u) - \log u`, the perturbed logit :math:`z = \theta + L`
and the hard sample :math:`b = H(z) = 1[z > 0] \sim
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

Evaluations. ``num_samples`` = S >= 3 objective evaluations, made in ONE
batched call on ``[b, σ_τ(z), σ_τ(z̃_1), ..., σ_τ(z̃_{S-2})]`` stacked on
the leading axis: the hard sample, its relaxation, and S - 2 conditional
relaxations whose terms are averaged (S = 3, the default, is the papers'
estimator; more conditional draws reduce the variance of the
:math:`\mathbb{E}[c(\tilde z) \mid b]` part). The returned value is
:math:`f(b)` (its pathwise gradient reaches the objective's variables).

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
(:math:`\mathbb{E}[\hat g]` does not depend on :math:`\phi`), as REBAR and
RELAX train their control variates. It needs second derivatives of the
objective with respect to its samples. An optimizer step that minimises the
loss thus minimises this variance for the state's variables.
"""

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


class _LearnedControlVariate(_core.Estimator):
  """Shared REBAR / RELAX machinery; subclasses define the surrogate r."""

  def state_spec(self, event_shape) -> Dict[str, np.ndarray]:
    """Initial values (float32 arrays) of the state tensors, by name."""
    del event_shape
    return {"eta": np.array(1.0, np.float32),
            "log_temperature": np.array(math.log(INITIAL_TEMPERATURE),
                                        np.float32)}

  def make_state(self, event_shape, dtype=tf.float32) -> tf.Module:
    """A ``tf.Module`` of fresh trainable variables, one per name of
    :meth:`state_spec` (an attribute of that name), to pass as
    ``control_variate=``."""
    module = tf.Module(name=f"{self.name}_control_variate")
    for name, value in self.state_spec(list(event_shape)).items():
      setattr(module, name, tf.Variable(tf.cast(value, dtype), name=name))
    return module

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

  def estimate_with_state(self, objective, logits, draw, expected_shape,
                          control_variate):
    dtype = logits.dtype
    work = _common.work_dtype(dtype)
    event_shape = logits.shape[-1:].as_list()
    theta = tf.stop_gradient(tf.cast(logits, work))
    noise = draw.noise
    hard = tf.cast(draw.samples, work)  # [1, *batch, D]
    z = theta + noise.logistic
    # z~ | b and its derivative w.r.t. theta (v and b held); elementwise.
    theta_full = tf.broadcast_to(theta, tf.shape(noise.conditional))
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(theta_full)
      z_tilde = _common.conditional_perturbed_logits(theta_full, hard,
                                                     noise.conditional)
    dz_tilde = tape.gradient(z_tilde, theta_full)
    state, trainable = self._state_tensors(control_variate, event_shape)
    phi = list(state.values())
    with tf.GradientTape(persistent=True,
                         watch_accessed_variables=False) as state_tape:
      state_tape.watch(phi)
      params = {n: tf.cast(t, work) for n, t in state.items()}
      eta = params["eta"]
      tau = tf.exp(params["log_temperature"])
      relaxed = tf.concat([relaxed_sigmoid(z / tau),
                           relaxed_sigmoid(z_tilde / tau)], 0)
      samples = tf.concat([tf.cast(hard, dtype), tf.cast(relaxed, dtype)], 0)
      values, sample_grad = _core.evaluate_with_sample_gradient(
          objective, samples, expected_shape, dtype, self.name)
      f = tf.cast(values, work)
      df = tf.cast(sample_grad, work)
      c = eta * f[1:]  # c(z), c(z~_m): [S - 1, *batch]
      dc = eta * df[1:]  # their gradients w.r.t. the relaxed samples
      with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(relaxed)
        r = self.surrogate(params, relaxed)
      if r is not None:
        c += r
        dc += tape.gradient(r, relaxed)
      jacobian_z = sigmoid_derivative(z[0] / tau) / tau
      jacobian_tilde = sigmoid_derivative(z_tilde / tau) / tau * dz_tilde
      score = hard[0] - tf.sigmoid(theta)
      grad = ((f[0] - tf.reduce_mean(c[1:], 0))[..., tf.newaxis] * score
              + dc[0] * jacobian_z
              - tf.reduce_mean(dc[1:] * jacobian_tilde, 0))
    value = _core.attach_gradient(self.value(values[:1], draw), logits,
                                  tf.cast(grad, dtype))
    if not trainable:
      return value

    @tf.custom_gradient
    def variance_gradient(value, *state_in):
      del state_in

      def backward(upstream):
        weight = 2.0 * tf.square(tf.cast(upstream, work))[..., tf.newaxis]
        d_state = state_tape.gradient(
            grad, phi, output_gradients=weight * grad,
            unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return [upstream] + d_state

      return tf.identity(value), backward

    return variance_gradient(value, *phi)


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
