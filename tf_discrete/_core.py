"""The functional core shared by every estimator family.

An estimator turns ``objective`` and ``logits`` into a value tensor whose
forward value is a Monte Carlo estimate of an expectation and whose gradient
w.r.t. ``logits`` is the estimator's gradient. Every family goes through
:func:`run_estimator`, which owns the parts that must behave the same
everywhere:

* argument validation (dtype, rank, estimator name, sample count, objective
  output shape) with errors that name the argument;
* stateless seeding (same seed => same samples and gradient in eager,
  ``tf.function`` and XLA);
* one batched call of the objective on all samples, stacked on axis 0;
* attaching the estimator gradient with ``tf.custom_gradient`` while the
  objective's own variables keep their ordinary pathwise gradient.

A family package (``bernoulli``, ``categorical``) only defines how to draw
samples and how to turn objective values into a gradient; each estimator
declares its cost, target, bias and options once, as
:class:`~tf_discrete.facts.Facts` (re-exported here), and the base class
derives all validation from them.
"""

import abc
import dataclasses
from typing import (Any, Callable, Dict, Generic, List, Mapping, Optional,
                    Sequence, Tuple, TypeVar)

import numpy as np
import tensorflow as tf

# The fact types, re-exported next to the Estimator that reads them.
from tf_discrete.facts import Cost  # pylint: disable=unused-import
from tf_discrete.facts import Estimates  # pylint: disable=unused-import
from tf_discrete.facts import Facts
from tf_discrete.facts import Option  # pylint: disable=unused-import

Objective = Callable[[tf.Tensor], tf.Tensor]

_SEED_MAX = 2**31 - 1


# --------------------------------------------------------------------------
# Validation.
# --------------------------------------------------------------------------


def convert_logits(logits, event_rank: int, event_desc: str) -> tf.Tensor:
  """Converts ``logits`` to a floating tensor and checks its rank.

  Args:
    logits: array-like of floating dtype.
    event_rank: number of trailing event axes (1 for ``[*batch, D]``, 2 for
      ``[*batch, V, C]``).
    event_desc: shape description used in the error message.

  Returns:
    The logits as a tensor.

  Raises:
    TypeError: integer / boolean / complex logits.
    ValueError: rank below ``event_rank`` or unknown rank.
  """
  if isinstance(logits, (tf.Tensor, tf.Variable)):
    dtype = logits.dtype
  else:
    logits = tf.convert_to_tensor(logits)
    dtype = logits.dtype
  if not dtype.is_floating:
    raise TypeError(
        f"`logits` must have a floating dtype (float16/bfloat16/float32/"
        f"float64), got {dtype.name}. Cast integer logits explicitly, e.g. "
        f"tf.cast(logits, tf.float32).")
  logits = tf.convert_to_tensor(logits)
  rank = logits.shape.rank
  if rank is None:
    raise ValueError(
        f"`logits` must have a statically known rank; expected {event_desc}.")
  if rank < event_rank:
    raise ValueError(
        f"`logits` must have shape {event_desc} (rank >= {event_rank}), got "
        f"shape {logits.shape}.")
  return logits


def check_objective_output(values: tf.Tensor, expected_shape: tf.TensorShape,
                           dtype: tf.DType) -> tf.Tensor:
  """Checks that ``objective`` returned ``[S, *batch]`` values."""
  values = tf.convert_to_tensor(values)
  if not values.dtype.is_floating:
    raise TypeError(
        f"`objective` must return a floating tensor, got {values.dtype.name}.")
  if not values.shape.is_compatible_with(expected_shape):
    raise ValueError(
        f"`objective` must map samples of shape [S, *batch, ...event] to "
        f"values of shape [S, *batch] = {expected_shape}, got "
        f"{values.shape}. Reduce over the event axes inside the objective "
        f"and keep the leading sample axis.")
  return tf.cast(values, dtype)


# --------------------------------------------------------------------------
# Seeds.
# --------------------------------------------------------------------------


def resolve_seed(seed) -> tf.Tensor:
  """Returns a stateless seed ``int32[2]``.

  ``None`` draws a fresh seed from TensorFlow's global RNG, so repeated calls
  give independent estimates; a given seed makes the estimate deterministic.
  """
  if seed is None:
    return tf.random.uniform([2], maxval=_SEED_MAX, dtype=tf.int32)
  if isinstance(seed, int):
    return tf.constant([0, seed], tf.int32)
  seed = tf.convert_to_tensor(seed)
  if not seed.dtype.is_integer:
    raise TypeError(
        f"`seed` must be None, a Python int or an integer tensor of shape "
        f"[2], got dtype {seed.dtype.name}.")
  if seed.shape.rank is not None and seed.shape.as_list() != [2]:
    raise ValueError(f"`seed` must have shape [2], got {seed.shape}.")
  return tf.cast(seed, tf.int32)


def split_seed(seed: tf.Tensor, num: int) -> List[tf.Tensor]:
  """Splits a stateless seed into ``num`` independent seeds."""
  return tf.unstack(tf.random.experimental.stateless_split(
      seed, num, alg=tf.random.Algorithm.PHILOX))


def uniform(shape, seed: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
  """U[0, 1) noise of the given shape, drawn statelessly.

  Built from Philox random bits rather than ``stateless_uniform(dtype=float)``
  because XLA converts bits to floats differently from the TF kernel: the
  bits agree across eager, ``tf.function`` and ``jit_compile=True``, so
  "same seed, same samples" holds everywhere only if we convert them
  ourselves. float64 gets 32 random bits, other dtypes 24 (float32's
  mantissa).

  The bits are drawn as uint64 and split into two uint32 words: XLA's CPU
  Philox costs about the same per generated word whatever its width, so
  this halves the time of the noise (the dominant cost of binarizing a
  batch of images inside a compiled training step).
  """
  static_shape = tf.get_static_value(tf.convert_to_tensor(shape, tf.int32))
  if static_shape is not None:  # Keeps static shapes static in graphs.
    shape = [int(d) for d in static_shape]
    size = int(np.prod(shape))
  else:
    shape = tf.convert_to_tensor(shape, tf.int32)
    size = tf.reduce_prod(shape)
  words = tf.random.stateless_uniform(
      [(size + 1) // 2], seed=seed, minval=None, maxval=None,
      dtype=tf.uint64, alg=tf.random.Algorithm.PHILOX)
  # Low word first (what a little-endian bitcast gives); shifts instead of
  # tf.bitcast, which XLA's CPU backend turns into a slow copy.
  low = tf.cast(words, tf.uint32)  # Keeps the low 32 bits.
  high = tf.cast(tf.bitwise.right_shift(words, tf.constant(32, tf.uint64)),
                 tf.uint32)
  bits = tf.reshape(tf.stack([low, high], -1), [-1])[:size]
  bits = tf.reshape(bits, shape)
  if dtype == tf.float64:
    return tf.cast(bits, tf.float64) * 2.0**-32
  mantissa = tf.bitwise.right_shift(bits, tf.constant(8, tf.uint32))
  return tf.cast(tf.cast(mantissa, tf.float32) * 2.0**-24, dtype)


# --------------------------------------------------------------------------
# Baselines and bounds.
# --------------------------------------------------------------------------


def softplus(x: tf.Tensor) -> tf.Tensor:
  r""":math:`\log(1 + e^x)`, stable for any x, without ``log1p``.

  :math:`\max(x, 0) + \log(1 + e)` with :math:`e = e^{-|x|} \in (0, 1]`;
  for :math:`e < 2^{-10}` the logarithm is replaced by
  :math:`e - e^2/2` (error below :math:`e^3/3 < 3 \cdot 10^{-10}`), where
  ``log(1 + e)`` would lose the low bits of e. Elsewhere its absolute error
  is float32 rounding (about 6e-8), as for ``tf.math.softplus``.

  Why: XLA's CPU ``log1p`` costs about as much as the rest of a Bernoulli
  log-likelihood over 784 pixels; this form halves the time of the
  100-sample evaluation's likelihood terms and of every training step's.
  The gradient is :math:`\sigma(x)`, set explicitly (autodiff of the
  kinks of ``max`` and ``abs`` would give 0 or 1 at x = 0, not 1/2).
  """
  x = tf.convert_to_tensor(x)

  @tf.custom_gradient
  def forward(x):
    small = tf.exp(-tf.abs(x))
    log1p_small = tf.where(small < 2.0**-10, small * (1.0 - 0.5 * small),
                           tf.math.log(1.0 + small))

    def grad(upstream):
      return upstream * tf.sigmoid(x)

    return tf.maximum(x, 0.0) + log1p_small, grad

  return forward(x)


def leave_one_out_mean(values: tf.Tensor, axis: int = 0) -> tf.Tensor:
  """Mean over ``axis`` of all entries except the one at each position.

  ``(sum_j v_j - v_k) / (K - 1)``; the RLOO / VarGrad baseline. Requires
  K >= 2 along ``axis``.
  """
  k = values.shape[axis]
  total = tf.reduce_sum(values, axis=axis, keepdims=True)
  return (total - values) / tf.cast(k - 1, values.dtype)


def log_mean_exp(values: tf.Tensor, axis: int = 0) -> tf.Tensor:
  """``log(mean_k exp(v_k))`` computed stably."""
  k = tf.cast(tf.shape(values)[axis], values.dtype)
  return tf.reduce_logsumexp(values, axis=axis) - tf.math.log(k)


def replace_each(values: tf.Tensor, replacements: tf.Tensor) -> tf.Tensor:
  """Row k: ``values`` (along axis 0) with entry k replaced by replacements[k].

  Args:
    values, replacements: ``[K, *rest]``.

  Returns:
    ``[K, K, *rest]``.
  """
  k = values.shape[0]
  eye = tf.reshape(tf.eye(k, dtype=tf.bool),
                   [k, k] + [1] * (values.shape.rank - 1))
  return tf.where(eye, replacements[:, tf.newaxis], values[tf.newaxis])


def leave_one_out_log_mean_exp(values: tf.Tensor) -> tf.Tensor:
  """VIMCO's leave-one-out bound along axis 0.

  Entry k is ``log((sum_{j != k} exp v_j + exp(mean_{j != k} v_j)) / K)``:
  the K-sample bound with the k-th term replaced by the geometric mean of the
  others (Mnih & Rezende, 2016, eq. 9).
  """
  swapped = replace_each(values, leave_one_out_mean(values, axis=0))
  return log_mean_exp(swapped, axis=1)


# --------------------------------------------------------------------------
# Gradient attachment.
# --------------------------------------------------------------------------


def attach_gradient(value: tf.Tensor, logits: tf.Tensor,
                    logits_grad: tf.Tensor) -> tf.Tensor:
  """Returns ``value`` with ``logits_grad`` attached as d value / d logits.

  The forward result equals ``value``; backprop sends ``upstream[..., None]
  * logits_grad`` to ``logits`` (broadcasting the upstream gradient over the
  event axes) on top of whatever pathwise gradient ``value`` already has.
  ``logits_grad`` must not depend on trainable state through a path that
  should be differentiated: it is treated as a constant.

  Non-finite logits never give a finite-looking estimate: a batch element
  with any non-finite logit gets a NaN value, and NaN gradients wherever it
  is used: for all its logits (every entry of the event, not only the bad
  one: the others' samples came from a meaningless draw) and, through the
  value, for whatever the objective's pathwise gradient reaches. Other
  batch elements keep their estimates and gradients.
  """
  event_rank = logits.shape.rank - value.shape.rank
  finite = tf.reduce_all(tf.math.is_finite(logits),
                         axis=list(range(value.shape.rank, logits.shape.rank)))
  logits_grad = tf.stop_gradient(logits_grad)

  def with_event_axes(t):
    return tf.reshape(t, tf.concat([tf.shape(t), [1] * event_rank], 0))

  def nan_like(t):
    return tf.fill(tf.shape(t), tf.constant(float("nan"), t.dtype))

  @tf.custom_gradient
  def attach(value_in, logits_in):
    del logits_in

    def grad(upstream):
      # Only where a bad element is actually used: 0 * NaN would otherwise
      # poison gradients of slices and sums that leave it out.
      poisoned = tf.logical_and(tf.logical_not(finite),
                                tf.not_equal(upstream, 0))
      d_value = tf.where(poisoned, nan_like(upstream), upstream)
      d_logits = with_event_axes(upstream) * tf.where(
          with_event_axes(finite), logits_grad, tf.zeros_like(logits_grad))
      d_logits = tf.where(with_event_axes(poisoned), nan_like(d_logits),
                          d_logits)
      return d_value, d_logits

    return tf.where(finite, value_in, nan_like(value_in)), grad

  return attach(value, logits)


# --------------------------------------------------------------------------
# Estimators and the registry.
# --------------------------------------------------------------------------


NoiseT = TypeVar("NoiseT")


@dataclasses.dataclass(frozen=True)
class Draw(Generic[NoiseT]):
  """Samples to evaluate plus whatever noise the gradient formula needs.

  Attributes:
    samples: ``[S, *batch, *event]`` in the logits' dtype.
    noise: the sampling scheme's noise record, a small frozen dataclass
      defined next to the scheme that creates it (``None`` when the
      gradient needs nothing beyond the samples).
  """
  samples: tf.Tensor
  noise: NoiseT = None


class Estimator(abc.ABC):
  """One gradient estimator of one family.

  A subclass declares its :class:`~tf_discrete.facts.Facts` as the class
  attribute ``facts`` (cost, target, bias, options, paper) and defines
  :meth:`sample` and :meth:`gradient`. Everything generic is derived from
  the facts here: ``num_samples`` validation (:meth:`resolve_num_samples`),
  option validation and defaults (:meth:`resolve_options`). :meth:`value`
  defaults to the sample mean of the objective (the estimate of
  :math:`\\mathbb{E}_q[f]`); estimators of the multi-sample bound override
  it.
  """

  name: str = ""
  facts: Facts

  def check_event_shape(self, event_shape: Sequence[int]) -> None:
    """Rejects event shapes the estimator cannot handle (default: none)."""
    del event_shape

  def resolve_num_samples(self, num_samples, event_shape,
                          options: Optional[Mapping[str, Any]] = None) -> int:
    """Returns the number of objective evaluations, validating the request
    against ``facts.cost`` (and the event shape); ``options`` (resolved)
    matter for costs that depend on an option, e.g. ``num_draws``."""
    self.check_event_shape(event_shape)
    return self.facts.cost.resolve(num_samples, event_shape, self.name,
                                   options)

  def evaluations(self, num_samples, event_shape, **options) -> int:
    """Objective evaluations per estimate (one batched call of this size)."""
    return self.resolve_num_samples(num_samples, event_shape,
                                    self.resolve_options(options))

  def resolve_options(self, options: Optional[Mapping[str, Any]] = None
                      ) -> Dict[str, Any]:
    """Validates ``options`` against ``facts.options``.

    Returns:
      Every declared option, canonical value or default, by name; this is
      what :meth:`sample` and :meth:`gradient` receive as keywords.

    Raises:
      TypeError: unknown options (the message lists the accepted ones), or
        a value of the wrong kind.
      ValueError: a value outside the option's accepted values.
    """
    options = dict(options or {})
    names = self.facts.option_names
    unknown = sorted(set(options) - set(names))
    if unknown:
      if not names:
        raise TypeError(
            f"Estimator '{self.name}' takes no options, got {unknown}.")
      raise TypeError(
          f"Estimator '{self.name}' got unknown options {unknown}; "
          f"it accepts: {', '.join(names)}.")
    return {option.name: option.check(options.get(option.name,
                                                  option.default), self.name)
            for option in self.facts.options}

  def check_options(self, options: Mapping[str, Any]) -> None:
    """Raises like :meth:`resolve_options` on invalid options."""
    self.resolve_options(options)

  @abc.abstractmethod
  def sample(self, logits: tf.Tensor, num_samples: int, seed: tf.Tensor,
             **options) -> Draw:
    """Draws the samples at which the objective is evaluated."""

  @abc.abstractmethod
  def gradient(self, values: tf.Tensor, draw: Draw, logits: tf.Tensor,
               **options) -> tf.Tensor:
    """Estimator gradient w.r.t. ``logits`` from constant objective values."""

  def value(self, values: tf.Tensor, draw: Draw) -> tf.Tensor:
    """The estimate returned to the caller: mean over samples."""
    del draw
    return tf.reduce_mean(values, axis=0)

  def objective_samples(self, logits: tf.Tensor, draw: Draw,
                        **options) -> tf.Tensor:
    """Differentiable samples for an estimator that needs the objective's
    gradient (``facts.needs_objective_gradient``).

    Called by :func:`run_estimator` with the caller's ``logits`` (gradient
    not stopped) instead of handing ``draw.samples`` to the objective. The
    result has the shape and dtype of ``draw.samples``; its forward value is
    where the objective is evaluated (relaxed samples, or the hard samples)
    and its derivative w.r.t. ``logits`` is the estimator's (the relaxation's
    Jacobian, or a straight-through surrogate attached with
    ``tf.custom_gradient``), so backprop of the objective's values reaches
    the logits through the objective. Whatever :meth:`gradient` returns is
    attached on top (zero for pure pathwise estimators).
    """
    del logits, draw, options
    raise NotImplementedError(
        f"Estimator '{self.name}' declares needs_objective_gradient but "
        f"defines no objective_samples(logits, draw, **options) giving the "
        f"objective differentiable samples.")


  def estimate_with_state(self, objective: Objective, logits: tf.Tensor,
                          draw: Draw, expected_shape: tf.TensorShape,
                          **options) -> tf.Tensor:
    """Steps 3 and 4 of :func:`run_estimator` for an estimator with
    ``facts.trainable_state`` (learned control variates).

    Gets the caller's ``logits`` (gradient not stopped), the draw, the
    expected objective output shape ``[S, *batch]`` and the resolved
    options (among them the control-variate state). Calls the objective
    once and returns the ``[*batch]`` estimate with every gradient
    attached: the logits', the pathwise one of the objective's variables,
    and the one its facts document for the state's variables.
    """
    del objective, logits, draw, expected_shape, options
    raise NotImplementedError(
        f"Estimator '{self.name}' declares trainable_state but defines no "
        f"estimate_with_state(objective, logits, draw, expected_shape, "
        f"**options) to evaluate and attach with its trainable state.")


class Registry:
  """Maps estimator names to estimator instances for one family."""

  def __init__(self, family: str):
    self.family = family
    self._estimators: Dict[str, Estimator] = {}

  def register(self, cls):
    """Class decorator: instantiates and registers ``cls`` under its name.

    The class must declare its own ``facts`` (not only inherit them), so
    every estimator's facts are written down where the estimator is.
    """
    if not isinstance(cls.__dict__.get("facts"), Facts):
      raise TypeError(
          f"{self.family} estimator class {cls.__name__} must declare "
          f"`facts = Facts(...)` in its own body.")
    instance = cls()
    if not instance.name:
      raise ValueError(f"{cls.__name__} has no `name`.")
    if instance.name in self._estimators:
      raise ValueError(f"Duplicate {self.family} estimator '{instance.name}'.")
    self._estimators[instance.name] = instance
    return cls

  def names(self) -> List[str]:
    """Sorted names of the registered estimators."""
    return sorted(self._estimators)

  def items(self) -> List[Tuple[str, Estimator]]:
    """``(name, estimator)`` pairs sorted by name."""
    return [(name, self._estimators[name]) for name in self.names()]

  def get(self, name) -> Estimator:
    """The estimator registered as ``name`` (an Estimator passes through)."""
    if isinstance(name, Estimator):
      return name
    if name not in self._estimators:
      raise ValueError(
          f"Unknown {self.family} `estimator` {name!r}; available: "
          f"{', '.join(self.names())}.")
    return self._estimators[name]


@dataclasses.dataclass(frozen=True)
class Family:
  """What differs between Bernoulli and categorical latents.

  Attributes:
    name: family name, used in messages.
    event_rank: trailing event axes of ``logits``.
    event_desc: shape description for messages.
    registry: the family's estimators.
    log_prob: ``(samples, logits) -> log q(samples)`` summed over the event
      axes; samples broadcast against logits.
    enumerate_states: ``event_shape -> [N, *event_shape]`` tensor of every
      state of one event, for exact gradients by enumeration.
  """
  name: str
  event_rank: int
  event_desc: str
  registry: Registry
  log_prob: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
  enumerate_states: Callable[[Sequence[int]], tf.Tensor]


def evaluate_with_sample_gradient(objective: Objective, samples: tf.Tensor,
                                  expected_shape: tf.TensorShape,
                                  dtype: tf.DType, estimator_name: str
                                  ) -> Tuple[tf.Tensor, tf.Tensor]:
  """``objective(samples)`` and its gradient w.r.t. ``samples``.

  The objective is called once, under a tape that watches ``samples`` (and
  no variables). Returns ``(values [S, *batch], d sum(values) / d samples)``;
  as each sample's value depends on that sample only, the gradient's row s
  is :math:`\\nabla f` at sample s. Tapes active around the call record it,
  gradient included (second derivatives of the objective are available to
  them).

  Raises:
    ValueError: the objective's values do not depend differentiably on the
      samples (also when an op on the way has no registered gradient).
  """
  with tf.GradientTape(watch_accessed_variables=False) as tape:
    tape.watch(samples)
    values = check_objective_output(objective(samples), expected_shape,
                                    dtype)
  why = ("its gradient with respect to them is None: the samples are cast "
         "(e.g. to an integer dtype), rounded, passed through "
         "tf.stop_gradient or used as indices")
  try:
    sample_grad = tape.gradient(values, samples)
  except LookupError as error:  # An op without a registered gradient.
    sample_grad, why = None, f"an op has no gradient ({error})"
  if sample_grad is None:
    raise ValueError(
        f"Estimator '{estimator_name}' needs the gradient of `objective` "
        f"with respect to its samples, but the objective's values are not "
        f"differentiable in the samples: {why}. Compute the objective with "
        f"differentiable float operations on the samples (products, "
        f"matmuls with the one-hot vectors), or use an estimator whose "
        f"facts say needs_objective_gradient=False (e.g. a score-function "
        f"or antithetic estimator).")
  return values, sample_grad


def _evaluate_differentiably(objective: Objective, samples: tf.Tensor,
                             expected_shape: tf.TensorShape, dtype: tf.DType,
                             estimator_name: str) -> tf.Tensor:
  """``objective(samples)``, checked to be differentiable in ``samples``
  (:func:`evaluate_with_sample_gradient`, the gradient left unused)."""
  values, _ = evaluate_with_sample_gradient(objective, samples,
                                            expected_shape, dtype,
                                            estimator_name)
  return values


def run_estimator(family: Family, objective: Objective, logits,
                  estimator, num_samples, seed, options) -> tf.Tensor:
  """Runs ``estimator`` of ``family``: validate, sample, evaluate, attach.

  The steps, in order:

  1. validate: ``objective`` callable, ``logits`` (dtype, rank, static event
     shape), the estimator name, its options (``resolve_options``: defaults
     filled in) and ``num_samples`` (``facts.cost``);
  2. sample: ``est.sample`` draws ``S`` samples and the noise record from a
     stateless seed;
  3. evaluate: one call ``objective(draw.samples)`` -> ``[S, *batch]``;
  4. attach: ``est.gradient`` turns the (constant) values into the logits
     gradient, attached to ``est.value`` by :func:`attach_gradient`.

  Estimators whose facts say ``needs_objective_gradient`` (relaxations,
  straight-through) change step 3: the objective is still called once on
  all S samples stacked, but on ``est.objective_samples(logits, draw)``,
  tensors differentiable w.r.t. the (not stopped) logits, so backprop of the
  values reaches the logits *through the objective*; the gradient w.r.t.
  variables used inside the objective stays its ordinary pathwise gradient.
  The call runs under a tape watching those samples, and if the values'
  gradient w.r.t. them is None (the objective casts, rounds or
  stop-gradients them, or uses them as indices) a ``ValueError`` names the
  estimator: without that check the logits would silently get no
  gradient. Inside ``tf.function`` / ``jit_compile`` the check only adds
  graph nodes that nothing uses (pruned, free at run time); executed
  eagerly it costs one backward pass of the objective w.r.t. its samples.
  Estimators with ``trainable_state`` (learned control variates) replace
  steps 3 and 4 by their own :meth:`Estimator.estimate_with_state` (the
  base class refuses with ``NotImplementedError``): it evaluates the
  objective (one batched call) and attaches the gradients of the logits
  and of the control-variate state, which it receives through an option
  of its facts.
  """
  if not callable(objective):
    raise TypeError(f"`objective` must be callable, got {objective!r}.")
  est = family.registry.get(estimator)
  logits = convert_logits(logits, family.event_rank, family.event_desc)
  event_shape = logits.shape[-family.event_rank:].as_list()
  batch_shape = logits.shape[:-family.event_rank]
  if None in event_shape:
    raise ValueError(
        f"`logits` must have static event dimensions, got shape {logits.shape}.")
  options = est.resolve_options(options)
  num = est.resolve_num_samples(num_samples, event_shape, options)
  seed = resolve_seed(seed)
  draw = est.sample(tf.stop_gradient(logits), num, seed, **options)
  # Step 3: evaluate the objective. Estimators that need its gradient
  # w.r.t. the samples get differentiable samples; estimators with
  # trainable state evaluate and attach everything themselves.
  expected_shape = tf.TensorShape([num]).concatenate(batch_shape)
  if est.facts.trainable_state:
    return est.estimate_with_state(objective, logits, draw, expected_shape,
                                   **options)
  if est.facts.needs_objective_gradient:
    values = _evaluate_differentiably(
        objective, est.objective_samples(logits, draw, **options),
        expected_shape, logits.dtype, est.name)
  else:
    values = check_objective_output(objective(draw.samples), expected_shape,
                                    logits.dtype)
  logits_grad = est.gradient(
      tf.stop_gradient(values), draw, tf.stop_gradient(logits), **options)
  return attach_gradient(est.value(values, draw), logits, logits_grad)
