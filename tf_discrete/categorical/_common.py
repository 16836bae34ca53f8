"""Pieces shared by the categorical estimators: registry, noise, the
independent sampling scheme, shape tools.

Conventions used throughout the subpackage:

* ``logits`` :math:`\\theta` have shape ``[*batch, V, C]``; each of the V
  variables is an independent ``Categorical(softmax(theta[..., v, :]))``.
* Noise and gradient arithmetic run in float32 (float64 for float64 logits),
  so half-precision logits get full-precision noise; samples are returned in
  the logits' dtype and gradients are cast back to it.
* All randomness is stateless (:func:`tf_discrete._core.uniform`), so the
  same seed gives the same samples eagerly, in ``tf.function`` and under XLA.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from tf_discrete import _core

REGISTRY = _core.Registry("categorical")


def work_dtype(dtype: tf.DType) -> tf.DType:
  """float64 for float64 logits, float32 otherwise."""
  return tf.float64 if dtype == tf.float64 else tf.float32


def to_work(logits: tf.Tensor) -> tf.Tensor:
  return tf.cast(logits, work_dtype(logits.dtype))


def num_categories(logits: tf.Tensor) -> int:
  return logits.shape[-1]


# --------------------------------------------------------------------------
# Noise.
# --------------------------------------------------------------------------


def open_uniform(shape, seed, dtype) -> tf.Tensor:
  """U(0, 1) noise that is never exactly 0 or 1.

  float32: the 24-bit grid of :func:`_core.uniform` is coarsened to 23 bits
  and shifted by half a cell, ``(2m + 1) 2^-24`` with ``m < 2^23``; every
  value is exactly representable, the smallest is ``2^-24`` and the largest
  ``1 - 2^-24``. float64: the 32-bit grid shifted by ``2^-33``.
  """
  if dtype == tf.float64:
    return _core.uniform(shape, seed, tf.float64) + 2.0**-33
  u = _core.uniform(shape, seed, tf.float32)
  return tf.floor(u * 2.0**23) * 2.0**-23 + 2.0**-24


def log_exponential(shape, seed, dtype) -> tf.Tensor:
  """``log E`` for ``E ~ Exp(1)``, finite everywhere (``E = -log U``)."""
  u = open_uniform(shape, seed, dtype)
  return tf.math.log(-tf.math.log(u))


def uniform_index(shape, seed, dtype, n) -> tf.Tensor:
  """Uniform integers in ``{0, ..., n-1}`` (int32), drawn statelessly."""
  u = _core.uniform(shape, seed, dtype)
  index = tf.cast(tf.floor(u * n), tf.int32)
  return tf.minimum(index, n - 1)  # u * n may round up to n.


def inverse_cdf_index(theta: tf.Tensor, num_samples: int, seed) -> tf.Tensor:
  r"""``[num_samples, *batch, V]`` Categorical(softmax(theta)) indices
  (int32), one uniform per variable: :math:`z = \#\{c < C - 1 : u \ge
  F_c\}` with :math:`F` the cumulative probabilities.

  For sampling without an estimator (evaluation bounds): one 32-bit
  uniform and C - 1 comparisons per variable instead of the race's C
  uniforms and 2C logarithms. F and u are float64, so each probability is
  honoured to within the 2^-32 grid of u (categories rarer than about
  2e-10 are not represented exactly, as with any 32-bit sampler).
  """
  probs = tf.nn.softmax(tf.cast(theta, tf.float64), axis=-1)
  thresholds = tf.math.cumsum(probs, axis=-1)[..., :-1]
  shape = tf.concat([[num_samples], tf.shape(theta)[:-1]], 0)
  u = _core.uniform(shape, seed, tf.float64)[..., tf.newaxis]
  return tf.reduce_sum(tf.cast(u >= thresholds, tf.int32), axis=-1)


def exponential_race(log_e: tf.Tensor, theta: tf.Tensor) -> tf.Tensor:
  r"""Category index :math:`\arg\min_c (\log E_c - \theta_c)` (int32).

  With :math:`E_c \sim \mathrm{Exp}(1)` i.i.d., :math:`E_c e^{-\theta_c}` is
  exponential with rate :math:`e^{\theta_c}`, so the argmin is
  :math:`\mathrm{Categorical}(\mathrm{softmax}(\theta))` (the Gumbel-max
  trick in exponential form). Replacing ``log E`` by the log of the
  normalized Dirichlet(1, ..., 1) vector ``pi = E / sum(E)`` shifts every
  coordinate equally and gives the same index: this is ARSM's
  :math:`z = \arg\min_c \pi_c e^{-\theta_c}`.
  """
  return tf.argmin(log_e - theta, axis=-1, output_type=tf.int32)


def log_add_exp(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
  """``log(exp(a) + exp(b))`` for finite a, b, without overflow."""
  return tf.maximum(a, b) + tf.math.softplus(-tf.abs(a - b))


def race_given_winner(log_e: tf.Tensor, theta: tf.Tensor,
                      index: tf.Tensor) -> tf.Tensor:
  r"""Perturbed logits :math:`\theta + G` drawn given their argmax.

  Top-down construction in exponential form. The race :math:`X_c = E_c
  e^{-\theta_c}` (so :math:`\theta_c + G_c = -\log X_c` with G standard
  Gumbel) has its minimum :math:`X_k \sim \mathrm{Exp}(Z)`, :math:`Z =
  \sum_c e^{\theta_c}`, independent of the winner k; given k, the others
  are :math:`X_i = X_k + E_i e^{-\theta_i}` (memorylessness). So with
  fresh :math:`E \sim \mathrm{Exp}(1)`:

  .. math:: \log X_k = \log E_k - \log Z, \qquad
     \log X_i = \mathrm{logaddexp}(\log X_k, \log E_i - \theta_i),

  all in log space (finite for any finite logits), and :math:`\arg\max_c
  (-\log X_c) = k`.

  Args:
    log_e: ``[*lead, *batch, V, C]`` fresh :math:`\log E` (work dtype).
    theta: ``[*batch, V, C]`` logits (work dtype, constant).
    index: ``[*batch, V]``-suffixed int32 winners, broadcastable to
      ``log_e[..., 0]``.

  Returns:
    ``[*lead, *batch, V, C]`` perturbed logits :math:`-\log X`.
  """
  winner = tf.equal(index[..., tf.newaxis],
                    tf.range(num_categories(theta), dtype=index.dtype))
  winner = tf.broadcast_to(winner, tf.shape(log_e))
  log_z = tf.reduce_logsumexp(theta, axis=-1, keepdims=True)
  log_x_winner = tf.reduce_sum(
      tf.where(winner, log_e, tf.zeros_like(log_e)), axis=-1,
      keepdims=True) - log_z
  log_x = tf.where(winner, tf.broadcast_to(log_x_winner, tf.shape(log_e)),
                   log_add_exp(log_x_winner, log_e - theta))
  return -log_x


def one_hot(index: tf.Tensor, depth: int, dtype) -> tf.Tensor:
  return tf.one_hot(index, depth, dtype=dtype)


def score(samples: tf.Tensor, theta: tf.Tensor) -> tf.Tensor:
  r""":math:`\nabla_\theta \log q(z) = \mathrm{onehot}(z) - \mathrm{softmax}(\theta)`."""
  return samples - tf.nn.softmax(theta, axis=-1)


# --------------------------------------------------------------------------
# The independent sampling scheme.
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RaceNoise:
  r"""Noise of K independent exponential-race samples.

  Attributes:
    log_e: ``[K, *batch, V, C]`` (work dtype), :math:`\log E` with
      :math:`E_c \sim \mathrm{Exp}(1)`; sample k of variable v is
      :math:`\arg\min_c (\log E_{k,v,c} - \theta_{v,c})`.
  """
  log_e: tf.Tensor

  @property
  def pi(self) -> tf.Tensor:
    r"""The Dirichlet(1, ..., 1) vectors :math:`\pi = E / \sum_c E_c`."""
    return tf.nn.softmax(self.log_e, axis=-1)


class IndependentSamples(_core.Estimator):
  """K independent categorical samples of every variable (exponential race)."""

  def sample(self, logits, num_samples, seed) -> _core.Draw[RaceNoise]:
    theta = to_work(logits)
    shape = tf.concat([[num_samples], tf.shape(theta)], 0)
    log_e = log_exponential(shape, seed, theta.dtype)
    index = exponential_race(log_e, theta)
    return _core.Draw(one_hot(index, num_categories(logits), logits.dtype),
                      RaceNoise(log_e))


# --------------------------------------------------------------------------
# Shapes.
# --------------------------------------------------------------------------


def leading_to_last(x: tf.Tensor, num: int = 1) -> tf.Tensor:
  """Moves the first ``num`` axes to the end, keeping their order."""
  rank = x.shape.rank
  return tf.transpose(x, list(range(num, rank)) + list(range(num)))


def last_to_leading(x: tf.Tensor, num: int = 1) -> tf.Tensor:
  """Inverse of :func:`leading_to_last`."""
  rank = x.shape.rank
  return tf.transpose(x, list(range(rank - num, rank)) +
                      list(range(rank - num)))


def take_last(x: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
  """Gathers ``x[..., index]`` per element of the batch.

  Args:
    x: ``[*batch, V, C]``.
    index: ``[*lead, *batch, V]`` int32 of full (not broadcast) shape;
      ``lead`` may be empty.

  Returns:
    ``[*lead, *batch, V]`` with ``out[l, b, v] = x[b, v, index[l, b, v]]``.
  """
  num_lead = index.shape.rank - (x.shape.rank - 1)
  if num_lead == 0:
    return tf.gather(x, index[..., tf.newaxis],
                     batch_dims=x.shape.rank - 1)[..., 0]
  moved = leading_to_last(index, num_lead)  # [*batch, V, *lead]
  lead_shape = tf.shape(index)[:num_lead]
  flat = tf.reshape(moved, tf.concat([tf.shape(moved)[:-num_lead], [-1]], 0))
  out = tf.gather(x, flat, batch_dims=x.shape.rank - 1)  # [*batch, V, L]
  out = tf.reshape(out, tf.concat([tf.shape(out)[:-1], lead_shape], 0))
  return last_to_leading(out, num_lead)


def permute_last(x: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
  """``out[..., i] = x[..., index[..., i]]``; x and index of equal shape."""
  return tf.gather(x, index, batch_dims=x.shape.rank - 1)


def reshape_leading(values: np.ndarray, rank: int) -> tf.Tensor:
  """A static 1-D array of length S as ``[S, 1, ..., 1]`` (``rank`` axes)."""
  return tf.reshape(tf.constant(values, tf.int32),
                    [len(values)] + [1] * (rank - 1))


def cast_like(grad: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
  return tf.cast(grad, logits.dtype)
