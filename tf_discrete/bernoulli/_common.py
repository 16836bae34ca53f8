r"""Pieces shared by the Bernoulli estimators: registry, log-probability,
the independent sampling scheme and its noise.

Notation: logits :math:`\theta` of shape ``[*batch, D]``,
:math:`b_d \sim \mathrm{Bernoulli}(\sigma(\theta_d))`. All randomness is
stateless (:func:`tf_discrete._core.uniform`): one uniform per (sample,
batch element, unit), so the same seed gives the same samples eagerly, in
``tf.function`` and under XLA.
"""

import dataclasses

import tensorflow as tf

from tf_discrete import _core

REGISTRY = _core.Registry("bernoulli")


def log_prob(samples, logits):
  """log q(b) = sum_d [b_d log sigma(theta_d) + (1-b_d) log sigma(-theta_d)].

  Written as ``-softplus(-(2b-1) theta)`` so it stays finite for |theta| up to
  the dtype's range.
  """
  signs = 2.0 * tf.cast(samples, logits.dtype) - 1.0
  return -tf.reduce_sum(_core.softplus(-signs * logits), axis=-1)


def enumerate_states(event_shape):
  """All 2^D binary vectors, ``[2^D, D]``, in binary counting order."""
  (num_units,) = event_shape
  codes = tf.range(2**num_units)[:, tf.newaxis]
  bits = tf.bitwise.right_shift(codes, tf.range(num_units)[tf.newaxis])
  return tf.cast(tf.bitwise.bitwise_and(bits, 1), tf.float32)


def threshold(u, logits):
  """b = 1[u < sigma(theta)]."""
  return tf.cast(u < tf.sigmoid(logits), logits.dtype)


def score(samples, logits):
  r""":math:`\nabla_\theta \log q(b) = b - \sigma(\theta)`."""
  return samples - tf.sigmoid(logits)


# --------------------------------------------------------------------------
# The independent sampling scheme.
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class IndependentNoise:
  """Noise of K independent samples.

  Attributes:
    u: ``[K, *batch, D]`` uniforms; sample k is ``1[u_k < sigma(theta)]``.
  """
  u: tf.Tensor


class IndependentSamples(_core.Estimator):
  """K independent samples b_k = 1[u_k < sigma(theta)]."""

  def sample(self, logits, num_samples, seed) -> _core.Draw[IndependentNoise]:
    shape = tf.concat([[num_samples], tf.shape(logits)], 0)
    u = _core.uniform(shape, seed, logits.dtype)
    return _core.Draw(threshold(u, logits), IndependentNoise(u))


# --------------------------------------------------------------------------
# Logistic noise (relaxations, straight-through).
# --------------------------------------------------------------------------


def work_dtype(dtype: tf.DType) -> tf.DType:
  """float64 for float64 logits, float32 otherwise (noise and relaxation
  arithmetic run in it; samples come back in the logits' dtype)."""
  return tf.float64 if dtype == tf.float64 else tf.float32


def open_uniform(shape, seed, dtype) -> tf.Tensor:
  """U(0, 1) noise that is never exactly 0 or 1 (so its logit is finite).

  float32: :func:`_core.uniform`'s 24-bit grid coarsened to 23 bits and
  shifted by half a cell, ``(2m + 1) 2^-24``, ``m < 2^23``: ``u`` and ``1 -
  u`` are both exact. float64: the 32-bit grid shifted by ``2^-33``.
  """
  if dtype == tf.float64:
    return _core.uniform(shape, seed, tf.float64) + 2.0**-33
  u = _core.uniform(shape, seed, tf.float32)
  return tf.floor(u * 2.0**23) * 2.0**-23 + 2.0**-24


def logistic_noise(shape, seed, dtype) -> tf.Tensor:
  r"""Standard logistic noise :math:`L = \log(1 - u) - \log u`, finite.

  With it, :math:`s = \theta + L` is the *perturbed logit*: :math:`b = 1[s
  > 0] \sim \mathrm{Bernoulli}(\sigma(\theta))` (the same event as ``u <
  sigma(theta)``), and :math:`\sigma(s/\tau)` is the binary Concrete
  relaxation of b at temperature :math:`\tau`.
  """
  u = open_uniform(shape, seed, dtype)
  return tf.math.log(1.0 - u) - tf.math.log(u)


def hard_threshold(perturbed, dtype) -> tf.Tensor:
  """b = 1[s > 0] for perturbed logits s, in ``dtype``."""
  return tf.cast(perturbed > 0, dtype)


def conditional_perturbed_logits(theta, samples, v) -> tf.Tensor:
  r"""Perturbed logits :math:`s = \theta + L` drawn given the hard sample.

  Given :math:`b = 1[s > 0]`, s is logistic(:math:`\theta`) truncated to
  the side of b. With :math:`\theta' = (2b - 1)\theta` and :math:`s' = (2b
  - 1)s > 0`, :math:`P(s' > t \mid s' > 0) = \sigma(\theta' - t) /
  \sigma(\theta')`; inverting at :math:`V \sim U(0, 1)`:

  .. math:: s' = \theta' - \mathrm{logit}(V\sigma(\theta'))
     = \mathrm{sp}(\theta') - \log V + \log\big(\sigma(-\theta') +
     (1 - V)\,\sigma(\theta')\big),

  evaluated in log space (:math:`\mathrm{sp}` = softplus, the last term a
  log-add-exp of :math:`-\mathrm{sp}(\theta')` and :math:`\log(1 - V) -
  \mathrm{sp}(-\theta')`): finite for any finite :math:`\theta`.

  Args:
    theta: ``[*batch, D]`` logits (work dtype, constant).
    samples: ``[S, *batch, D]`` hard samples b (work dtype).
    v: ``[K, S, *batch, D]`` open uniforms (work dtype), one conditional
      draw per leading index.

  Returns:
    ``[K, S, *batch, D]`` perturbed logits with the sign of ``2b - 1``.
  """
  sign = 2.0 * samples - 1.0
  theta_side = sign * theta
  sp_pos = tf.math.softplus(theta_side)
  sp_neg = tf.math.softplus(-theta_side)
  a = -sp_pos
  b = tf.math.log(1.0 - v) - sp_neg
  log_add = tf.maximum(a, b) + tf.math.softplus(-tf.abs(a - b))
  return sign * (sp_pos - tf.math.log(v) + log_add)
