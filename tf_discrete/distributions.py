r"""TensorFlow Probability interop: estimate with a ``tfd`` distribution.

``tf_discrete.estimate(objective, distribution, estimator=..., ...)`` takes a
``tfd.Bernoulli``, ``tfd.Categorical`` or ``tfd.OneHotCategorical`` (built
from logits or probs, any batch shape), optionally wrapped in
``tfd.Independent``, and runs the matching family's estimator on it.

The objective speaks the distribution's own language: it receives samples
shaped and typed as ``distribution.sample(S)`` would return them, ``[S,
*batch_shape, *event_shape]`` in ``distribution.dtype`` (0/1 for Bernoulli,
category indices for Categorical, one-hot vectors for OneHotCategorical),
and returns one value per sample and batch element, ``[S, *batch_shape]``.
The estimate is ``[*batch_shape]``; its gradient reaches the
distribution's parameter (``logits``, or ``probs`` through ``log probs``).

How a distribution maps onto a family, with ``B = batch_shape``:

* ``Bernoulli`` (event ``[]``): every element is one unit, ``[*B, 1]``;
  ``Independent(Bernoulli)`` with event ``[D]``: ``[*B, D]``.
* ``Categorical`` / ``OneHotCategorical`` (event ``[]`` / ``[C]``): one
  variable, ``[*B, 1, C]``; ``Independent(...)`` with event ``[V]`` /
  ``[V, C]``: ``[*B, V, C]``.

tensorflow-probability is imported here only, on first use.
"""

from typing import Callable, Tuple

import tensorflow as tf

from tf_discrete import bernoulli
from tf_discrete import categorical

_SUPPORTED = "tfd.Bernoulli, tfd.Categorical, tfd.OneHotCategorical"


def _tfd():
  import tensorflow_probability as tfp  # pylint: disable=g-import-not-at-top
  return tfp.distributions


def _logits_of(dist) -> tf.Tensor:
  """The distribution's logits as a tensor that keeps the gradient path to
  its parameter (probs enter through their logarithm)."""
  if dist.logits is not None:
    return tf.convert_to_tensor(dist.logits)
  probs = tf.convert_to_tensor(dist.probs)
  if isinstance(dist, _tfd().Bernoulli):
    return tf.math.log(probs) - tf.math.log1p(-probs)
  return tf.math.log(probs)


def _unwrap(distribution) -> Tuple[object, int]:
  """The base distribution and how many of its batch axes are event axes."""
  tfd = _tfd()
  reinterpreted = 0
  while isinstance(distribution, tfd.Independent):
    ndims = tf.get_static_value(distribution.reinterpreted_batch_ndims)
    if ndims is None:
      raise ValueError("`distribution`: tfd.Independent needs a static "
                       "`reinterpreted_batch_ndims`.")
    reinterpreted += int(ndims)
    distribution = distribution.distribution
  return distribution, reinterpreted


def _family_inputs(distribution):
  """``(family module, logits, to_user, batch_rank)``: the family's logits
  and the map from the family's samples to the distribution's."""
  tfd = _tfd()
  base, reinterpreted = _unwrap(distribution)
  if reinterpreted > 1:
    raise ValueError(
        f"`distribution`: tfd.Independent may reinterpret at most one batch "
        f"axis as the event (the units, or the variables); got "
        f"{reinterpreted}.")
  if not isinstance(base, (tfd.Bernoulli, tfd.Categorical,
                           tfd.OneHotCategorical)):
    raise TypeError(
        f"`distribution` must be one of {_SUPPORTED} (optionally in "
        f"tfd.Independent), got {type(distribution).__name__}.")
  dtype = distribution.dtype
  logits = _logits_of(base)
  if not logits.dtype.is_floating:
    raise TypeError(f"`distribution` has {logits.dtype.name} logits; they "
                    f"must be floating.")
  if isinstance(base, tfd.Bernoulli):
    if reinterpreted == 0:
      logits = logits[..., tf.newaxis]

    def to_user(samples):
      samples = samples if reinterpreted else samples[..., 0]
      return tf.cast(samples, dtype)

    return bernoulli, logits, to_user
  one_hot = isinstance(base, tfd.OneHotCategorical)
  if reinterpreted == 0:
    logits = logits[..., tf.newaxis, :]

  def to_user(samples):
    samples = samples if reinterpreted else samples[..., 0, :]
    if one_hot:
      return tf.cast(samples, dtype)
    return tf.cast(tf.argmax(samples, axis=-1), dtype)

  return categorical, logits, to_user


def estimate(objective: Callable[[tf.Tensor], tf.Tensor], distribution,
             estimator: str = "disarm", num_samples=None, seed=None,
             **options) -> tf.Tensor:
  """Estimates :math:`\\mathbb{E}[f(x)]`, ``x ~ distribution``, with the
  estimator's gradient attached to the distribution's parameter.

  Args:
    objective: maps samples ``[S, *batch_shape, *event_shape]`` in the
      distribution's dtype to values ``[S, *batch_shape]``; called once.
    distribution: a ``tfd.Bernoulli``, ``tfd.Categorical`` or
      ``tfd.OneHotCategorical`` (logits or probs), optionally in a
      ``tfd.Independent`` that reinterprets one batch axis.
    estimator: a name of the matching family
      (``tf_discrete.bernoulli.available()`` /
      ``tf_discrete.categorical.available()``). The default suits
      Bernoulli; categorical distributions need a categorical name, e.g.
      "rloo".
    num_samples, seed, **options: as the family's ``estimate``.

  Returns:
    ``[*batch_shape]`` estimate.

  Raises:
    TypeError: another kind of distribution (the message lists the
      supported ones).
    ValueError: an estimator of the other family (the message lists the
      family's names), or an unsupported tfd.Independent.
  """
  family, logits, to_user = _family_inputs(distribution)
  return family.estimate(lambda samples: objective(to_user(samples)), logits,
                         estimator, num_samples=num_samples, seed=seed,
                         **options)
