r"""What a model's estimator carries from step to step: options that follow
a schedule, and learned control-variate parameters.

Scheduled options.

A relaxation estimator's temperature trades bias (high temperature) for
variance (low temperature); the Gumbel-softmax paper (Jang, Gu, Poole 2017)
anneals it during training:

.. math:: \tau_t = \max\big(\tau_{\min},\ \tau_0\, e^{-r t}\big),

with :math:`\tau_0` the estimator's ``temperature`` option, :math:`r` the
decay rate per step and :math:`\tau_{\min}` the floor (the paper: r in
{1e-5, 1e-4}, floor 0.5, recomputed every 500 or 1,000 steps; here the
value is recomputed at every step, the continuous form of the same curve).

A model with scheduled options holds each one as a non-trainable variable
that it passes to its estimator (``temperature`` accepts a variable); the
training loop assigns ``schedule(step)`` to it at the start of every step,
in the compiled loop, and logs its value with the evaluations. The value
is a function of the step alone, so a resumed run continues the curve
without checkpointing it.

Control-variate parameters. An estimator with ``facts.trainable_state``
(REBAR, RELAX, double control variates, RODEO) gets one state per
stochastic layer, built by ``estimator.make_state(event_shape)``: its
variables form the model's parameter group ``control_variate``, trained by
their own optimizer on the gradient the estimator attaches to them (the
gradient of a single-sample estimate of the encoder gradient's variance),
so one optimizer step over every group trains the model and lowers the
estimator's variance. They are part of the checkpoint.
"""

import dataclasses
import math
from typing import Any, Dict, Mapping, Optional

import tensorflow as tf

#: The models' parameter group of the control-variate parameters.
CONTROL_VARIATE_GROUP = "control_variate"
#: The Gumbel-softmax paper's floor.
DEFAULT_MIN_TEMPERATURE = 0.5


@dataclasses.dataclass(frozen=True)
class ExponentialDecay:
  """``max(floor, initial * exp(-rate * step))``.

  Attributes:
    initial: value at step 0 (> 0).
    rate: decay per step (>= 0).
    floor: lower bound (> 0, <= initial).
  """
  initial: float
  rate: float
  floor: float

  def __post_init__(self):
    if not self.initial > 0:
      raise ValueError(f"The initial temperature must be > 0, got "
                       f"{self.initial}.")
    if not (self.rate >= 0 and math.isfinite(self.rate)):
      raise ValueError(f"`temperature_decay` must be a finite rate >= 0 per "
                       f"step, got {self.rate}.")
    if not 0 < self.floor <= self.initial:
      raise ValueError(
          f"`min_temperature` must be in (0, initial temperature "
          f"{self.initial}], got {self.floor}.")

  def __call__(self, step) -> tf.Tensor:
    """The value at ``step`` (a scalar tensor or int), float32."""
    step = tf.cast(step, tf.float32)
    return tf.maximum(tf.constant(self.floor, tf.float32),
                      self.initial * tf.exp(-self.rate * step))


def temperature_schedule(family, estimator: str, options: Mapping[str, Any],
                         decay: Optional[float],
                         floor: Optional[float]) -> Optional[ExponentialDecay]:
  """The annealing of ``estimator``'s temperature, or None (constant).

  Args:
    family: ``tf_discrete.bernoulli`` or ``tf_discrete.categorical``.
    estimator: the estimator's name in ``family``.
    options: the run's estimator options (``temperature`` is the start;
      unset: the estimator's default).
    decay: decay rate per step; None: no annealing.
    floor: the floor; None: :data:`DEFAULT_MIN_TEMPERATURE` (or the start,
      if that is lower).

  Raises:
    ValueError: annealing asked for an estimator without a ``temperature``
      option, or a floor without a decay.
  """
  if decay is None:
    if floor is not None:
      raise ValueError("`min_temperature` is the floor of the annealing "
                       "schedule; it needs `temperature_decay`.")
    return None
  est = family.get(estimator)
  if "temperature" not in est.facts.option_names:
    takes = [n for n in family.available()
             if "temperature" in family.get(n).facts.option_names]
    raise ValueError(
        f"`temperature_decay` anneals the `temperature` option, which "
        f"estimator '{estimator}' does not have (estimators with one: "
        f"{', '.join(takes)}).")
  initial = float(est.resolve_options(dict(options))["temperature"])
  if floor is None:
    floor = min(DEFAULT_MIN_TEMPERATURE, initial)
  return ExponentialDecay(initial=initial, rate=float(decay),
                          floor=float(floor))


class EstimatorState(tf.Module):
  """The run-time state of a model's estimator: scheduled options and
  control-variate parameters, and the options they add to each estimate.

  Args:
    family: ``tf_discrete.bernoulli`` or ``tf_discrete.categorical``.
    estimator: the estimator's name.
    options: its configured options (plain values).
    event_shape: event shape of one stochastic layer's latents.
    num_layers: stochastic layers (one control-variate state each).
    temperature_decay, min_temperature: the annealing schedule
      (:func:`temperature_schedule`); None: constant temperature.
  """

  def __init__(self, family, estimator: str, options: Mapping[str, Any],
               event_shape, num_layers: int = 1,
               temperature_decay: Optional[float] = None,
               min_temperature: Optional[float] = None):
    super().__init__(name="estimator_state")
    self.estimator = estimator
    schedule = temperature_schedule(family, estimator, options,
                                    temperature_decay, min_temperature)
    # Not tracked (a plain dict of a plain object): a scheduled value is a
    # function of the step, recomputed each step, not checkpointed.
    self._scheduled = _Untracked(
        {} if schedule is None else {"temperature": schedule})
    est = family.get(estimator)
    if est.facts.trainable_state:
      self.control_variates = [est.make_state(list(event_shape))
                               for _ in range(num_layers)]

  @property
  def control_variate_variables(self):
    """Trainable control-variate variables of every layer (may be empty)."""
    return [v for state in getattr(self, "control_variates", ())
            for v in state.trainable_variables]

  def options(self, layer: int = 0) -> Dict[str, Any]:
    """Options to add to layer ``layer``'s estimate: the scheduled option
    variables and the layer's control-variate state."""
    added = dict(self._scheduled.variables)
    if hasattr(self, "control_variates"):
      added["control_variate"] = self.control_variates[layer]
    return added

  def begin_step(self, step):
    """Sets every scheduled option to its value at ``step``."""
    self._scheduled.assign(step)

  def scheduled_values(self) -> Dict[str, tf.Variable]:
    """The scheduled options' variables, by name (logged as metrics)."""
    return dict(self._scheduled.variables)


class EstimatorStateMixin:
  """The training loop's optional model hooks, for a model holding an
  :class:`EstimatorState` as ``self.estimator_state``."""

  def begin_step(self, step):
    """Called by the training loop before each step's gradients."""
    self.estimator_state.begin_step(step)

  def scheduled_values(self) -> Dict[str, tf.Variable]:
    """Option values that follow a schedule (logged with evaluations)."""
    return self.estimator_state.scheduled_values()


class _Untracked:
  """Scheduled option variables kept out of the checkpoint."""

  def __init__(self, schedules: Mapping[str, Any]):
    self.schedules = dict(schedules)
    self.variables: Dict[str, tf.Variable] = {
        name: tf.Variable(schedule(0), trainable=False, name=name)
        for name, schedule in self.schedules.items()}

  def assign(self, step):
    for name, schedule in self.schedules.items():
      self.variables[name].assign(schedule(step))
