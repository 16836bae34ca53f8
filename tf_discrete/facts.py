"""What an estimator is, declared once: cost, target, bias, options.

Every registered estimator carries a :class:`Facts` as its class attribute
``facts``. The estimator base class reads everything from it (how many
objective evaluations ``num_samples`` means and which values are valid,
which options exist, their defaults and accepted values), and the estimator
tables of the documentation are generated from it, so a fact lives in one
place::

    from tf_discrete import bernoulli, categorical

    bernoulli.get("disarm").facts.cost.describe()      # '2P (default 2)'
    categorical.get("disarm_iw").facts.option("logits_order").default
    for name, estimator in categorical.REGISTRY.items():
      print(name, estimator.facts.estimates, estimator.facts.unbiased)

Nothing here depends on TensorFlow.
"""

import dataclasses
import enum
import operator
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

EventShape = Sequence[int]


class Estimates(enum.Enum):
  """The quantity whose value and gradient an estimator returns."""

  #: :math:`\mathbb{E}_q[f(b)]`: the mean of f over the samples, which is
  #: the single-sample bound when f is an ELBO.
  MEAN = "mean"
  #: The K-sample bound :math:`\mathbb{E}[\log \frac1K \sum_k e^{f(b_k)}]`
  #: (``vimco``, ``local_disarm``).
  BOUND = "bound"

  @property
  def description(self) -> str:
    """Short human description, as used in the estimator tables."""
    return {"mean": "E_q[f]", "bound": "K-sample bound"}[self.value]


def _matches(value, accepted) -> bool:
  """``value`` is the accepted value ``accepted`` (same kind and value).

  Stricter than ``==``: ``1`` is not ``True`` and ``'1'`` is not ``1``;
  NumPy booleans and strings count as their Python kinds. Never raises
  (arrays and other odd values simply do not match).
  """
  if value is accepted:
    return True
  if accepted is None:
    return False
  if isinstance(accepted, bool):
    return isinstance(value, (bool, np.bool_)) and bool(value) == accepted
  if isinstance(value, (bool, np.bool_)):
    return False
  if not isinstance(value, type(accepted)):
    return False
  try:
    return bool(value == accepted)
  except Exception:  # pylint: disable=broad-except
    return False


def _describe_values(values) -> str:
  if all(isinstance(v, bool) for v in values) and len(values) == 2:
    return "True or False"
  return "one of " + ", ".join(repr(v) for v in values)


def _is_floating_dtype(dtype) -> bool:
  if hasattr(dtype, "is_floating"):  # tf.DType
    return bool(dtype.is_floating)
  name = str(getattr(dtype, "name", dtype))
  return "float" in name  # NumPy dtypes, Keras dtype strings.


def positive_number(value):
  """Validator of a positive real option that may also be a scalar tensor.

  For ``Option(validate=positive_number)`` (e.g. a relaxation's
  ``temperature``):

  * a Python or NumPy real number (not a bool) must be finite and > 0; it
    is returned as a Python float;
  * a scalar floating tensor or variable (``tf.Tensor``, ``tf.Variable``,
    ``keras.Variable``) is returned as is, so a variable stays a variable:
    it is read each time the estimator runs (an annealing schedule can
    ``assign`` to it between steps without retracing) and never frozen
    into a constant. Its value may change between calls, so its sign is
    not checked; it must stay positive.

  Raises:
    TypeError: a bool, a non-numeric value, an integer or non-scalar
      tensor.
    ValueError: a number <= 0 or not finite.
  """
  if isinstance(value, (bool, np.bool_)):
    raise TypeError(f"must be a positive number, got {value!r}")
  if isinstance(value, np.ndarray) and value.ndim == 0:
    value = value[()]
  if isinstance(value, (int, float, np.integer, np.floating)):
    number = float(value)
    if not np.isfinite(number) or number <= 0:
      raise ValueError(f"must be a positive finite number, got {value!r}")
    return number
  if hasattr(value, "dtype") and hasattr(value, "shape"):
    shape = value.shape
    rank = getattr(shape, "rank", None)
    if rank is None and not hasattr(shape, "rank"):
      rank = len(tuple(shape))
    if rank != 0 or not _is_floating_dtype(value.dtype):
      raise TypeError(
          f"must be a positive number or a scalar floating tensor or "
          f"variable, got a {type(value).__name__} of shape {shape} and "
          f"dtype {value.dtype}")
    return value
  raise TypeError(f"must be a positive number or a scalar floating tensor "
                  f"or variable, got {value!r}")


def positive_int(value) -> int:
  """Validator of a positive integer option (a Python or NumPy int, not a
  bool); returns it as a Python int.

  Raises:
    TypeError: not an integer.
    ValueError: below 1.
  """
  try:
    if isinstance(value, (bool, np.bool_)):
      raise TypeError
    count = operator.index(value)
  except TypeError:
    raise TypeError(f"must be a positive Python int, got {value!r}") from None
  if count < 1:
    raise ValueError(f"must be a positive int, got {count}")
  return count


@dataclasses.dataclass(frozen=True)
class Option:
  """One estimator option (a keyword argument of ``estimate``).

  Attributes:
    name: keyword name.
    default: value used when the option is not passed. Passing ``None``
      also means the default when ``None`` is among ``accepted``.
    accepted: the allowed values, or ``None`` for any value that passes
      ``validate``. Values are compared by kind and value (``1`` is not
      ``True``).
    doc: one line on what the option does.
    validate: for ``accepted=None``: a callable that returns the canonical
      value or raises ``ValueError``/``TypeError`` with a message about the
      value (the option and estimator names are added).
  """
  name: str
  default: Any
  accepted: Optional[Tuple[Any, ...]] = None
  doc: str = ""
  validate: Optional[Callable[[Any], Any]] = None

  def __post_init__(self):
    if self.accepted is not None:
      object.__setattr__(self, "accepted", tuple(self.accepted))
      if not any(_matches(self.default, a) for a in self.accepted):
        raise ValueError(
            f"Option {self.name!r}: default {self.default!r} is not among "
            f"its accepted values {self.accepted!r}.")

  def check(self, value, estimator_name: str):
    """Returns the canonical value of the option (``None`` -> default).

    Raises:
      TypeError: a non-boolean value for a True/False option.
      ValueError: any other value outside ``accepted``; errors from
        ``validate``. Messages name the option, the estimator and the
        accepted values.
    """
    if self.accepted is None:
      if self.validate is None:
        return value
      try:
        return self.validate(value)
      except (TypeError, ValueError) as error:
        raise type(error)(
            f"`{self.name}` of estimator '{estimator_name}': {error}"
        ) from None
    for accepted in self.accepted:
      if _matches(value, accepted):
        return self.default if value is None else accepted
    flag = all(isinstance(a, bool) for a in self.accepted)
    raise (TypeError if flag else ValueError)(
        f"`{self.name}` must be {_describe_values(self.accepted)} for "
        f"estimator '{estimator_name}'; got {value!r}.")

  def describe(self) -> str:
    """``name=default``, as in the estimator tables."""
    return f"{self.name}={self.default!r}"


def _as_count(num_samples) -> int:
  try:
    if isinstance(num_samples, (bool, np.bool_)):
      raise TypeError
    return operator.index(num_samples)
  except TypeError:
    raise TypeError(
        f"`num_samples` must be a Python int or None, got "
        f"{num_samples!r}.") from None


@dataclasses.dataclass(frozen=True)
class Cost:
  """Objective evaluations per estimate (``num_samples``).

  Attributes:
    default: evaluations when ``num_samples`` is None: an int, or a function
      of the event shape (e.g. C for categorical RLOO).
    fixed: the cost is always ``default(event_shape)``; ``num_samples`` must
      be None or equal to it.
    minimum: least number of evaluations.
    multiple: evaluations come in groups of this size (2 for antithetic
      pairs).
    per: human word for one group ("pair" where ``multiple == 2``).
    formula: how a callable ``default`` depends on the event shape, for
      :meth:`describe` (e.g. ``"C"``, ``"C(C-1)/2 + 1"``).
    repeats: for a fixed cost, the name of an integer option that repeats
      the whole scheme independently (e.g. ``"num_draws"``): the cost is
      ``default(event_shape)`` times the option's value (1 when the option
      is not given). None: no option changes the cost.

  Options reach the cost through the ``options`` argument of
  :meth:`resolve` and :meth:`default_for` (the resolved options of the
  estimate); without it the cost is the one of the default options.
  """
  default: Union[int, Callable[[EventShape], int]]
  fixed: bool = False
  minimum: int = 1
  multiple: int = 1
  per: str = "sample"
  formula: str = ""
  repeats: Optional[str] = None

  def __post_init__(self):
    if callable(self.default) and not self.formula:
      raise ValueError("A Cost with a callable default needs a `formula`.")
    if self.repeats is not None and not self.fixed:
      raise ValueError("Only a fixed Cost can have `repeats`.")
    if not callable(self.default) and not self.fixed:
      if (self.default < self.minimum or self.default % self.multiple):
        raise ValueError(
            f"Cost default {self.default} violates minimum {self.minimum} "
            f"/ multiple {self.multiple}.")

  def repetitions(self, options: Optional[Mapping[str, Any]] = None) -> int:
    """How many times the scheme runs: the ``repeats`` option's value in
    ``options`` (1 without ``repeats``, options, or a value)."""
    if self.repeats is None or not options:
      return 1
    value = options.get(self.repeats)
    return 1 if value is None else int(value)

  def default_for(self, event_shape: EventShape,
                  options: Optional[Mapping[str, Any]] = None) -> int:
    """The default number of evaluations for ``event_shape`` (and, for a
    cost with ``repeats``, the estimate's ``options``)."""
    if callable(self.default):
      base = int(self.default(event_shape))
    else:
      base = int(self.default)
    return base * self.repetitions(options)

  def resolve(self, num_samples, event_shape: EventShape,
              estimator_name: str,
              options: Optional[Mapping[str, Any]] = None) -> int:
    """Validated number of objective evaluations for one estimate.

    Args:
      num_samples: the requested evaluations, or None for the default.
      event_shape: the logits' event shape.
      estimator_name: for messages.
      options: the estimate's resolved options; they matter only for a
        cost with ``repeats`` (None: the default options).

    Raises:
      TypeError: ``num_samples`` neither None nor an int.
      ValueError: below ``minimum``, not a multiple of ``multiple``, or
        different from a fixed cost. Messages name ``num_samples``, the
        estimator and what it accepts.
    """
    if self.fixed:
      cost = self.default_for(event_shape, options)
      if num_samples is not None and _as_count(num_samples) != cost:
        repeats = self.repetitions(options)
        formula = (self.formula if repeats == 1 else
                   f"({self.formula}) x {self.repeats}={repeats}")
        raise ValueError(
            f"`num_samples`={num_samples} is invalid for estimator "
            f"'{estimator_name}': its cost is fixed at {cost} objective "
            f"evaluations ({formula}) for event shape "
            f"{list(event_shape)}; pass None or {cost}.")
      return cost
    if num_samples is None:
      return self.default_for(event_shape)
    num_samples = _as_count(num_samples)
    if num_samples < self.minimum:
      raise ValueError(
          f"`num_samples`={num_samples} is invalid for estimator "
          f"'{estimator_name}': it needs at least {self.minimum} objective "
          f"evaluations.")
    if num_samples % self.multiple:
      needs = ("an even number" if self.multiple == 2 else
               f"a multiple of {self.multiple}")
      raise ValueError(
          f"`num_samples`={num_samples} is invalid for estimator "
          f"'{estimator_name}': it needs {needs} of objective evaluations "
          f"({self.multiple} per {self.per}).")
    return num_samples

  def describe(self) -> str:
    """E.g. ``"K (default 1)"``, ``"2P (default 2)"``, ``"C (fixed)"``,
    ``"C × num_draws (fixed)"``."""
    default = self.formula if callable(self.default) else str(self.default)
    if self.fixed:
      if self.repeats is not None:
        if " " in default:
          default = f"({default})"
        return f"{default} × {self.repeats} (fixed)"
      return f"{default} (fixed)"
    count = "K" if self.multiple == 1 else f"{self.multiple}P"
    if self.minimum > self.multiple:
      count += f" ≥ {self.minimum}"
    return f"{count} (default {default})"


@dataclasses.dataclass(frozen=True)
class Facts:
  """Everything a caller or a table needs to know about one estimator.

  Attributes:
    estimates: the quantity returned (and differentiated).
    cost: objective evaluations per estimate.
    unbiased: the gradient is unbiased for that quantity (with the default
      options).
    needs_objective_gradient: the estimator needs the objective's gradient
      w.r.t. its samples (relaxations, straight-through, learned control
      variates), so the objective must be differentiable in them.
    trainable_state: the estimator carries trainable parameters (e.g. a
      control variate trained to minimise variance).
    options: the keyword options it accepts.
    paper: short citation, e.g. ``"Dong, Mnih, Tucker 2020"``.
    evaluations_per_bound_term: for a K-sample bound, the objective
      evaluations that one of its K terms costs (2 when each term's sample
      comes with an antithetic partner that only serves the gradient).
  """
  estimates: Estimates
  cost: Cost
  unbiased: bool
  needs_objective_gradient: bool = False
  trainable_state: bool = False
  options: Tuple[Option, ...] = ()
  paper: str = ""
  evaluations_per_bound_term: int = 1

  def __post_init__(self):
    object.__setattr__(self, "options", tuple(self.options))
    names = [o.name for o in self.options]
    if len(set(names)) != len(names):
      raise ValueError(f"Duplicate option names in {names}.")

  def bound_terms(self, evaluations: int) -> int:
    """K of the K-sample bound estimated with ``evaluations`` objective
    evaluations; 1 for an estimator of E_q[f] (the one-sample bound)."""
    if self.estimates is Estimates.MEAN:
      return 1
    return evaluations // self.evaluations_per_bound_term

  @property
  def option_names(self) -> Tuple[str, ...]:
    """Names of the accepted options, in declaration order."""
    return tuple(o.name for o in self.options)

  def option(self, name: str) -> Option:
    """The :class:`Option` called ``name`` (``KeyError`` if none)."""
    for option in self.options:
      if option.name == name:
        return option
    raise KeyError(name)
