"""The enumeration behind every exact-gradient test, against closed forms."""

import numpy as np
import tensorflow as tf

from tf_discrete import diagnostics


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


F1, F0 = 2.0, -1.0  # f(b) for b = 1 and b = 0.


def _one_unit_objective(b):
  return F1 * b[..., 0] + F0 * (1.0 - b[..., 0])


def test_bernoulli_expectation_one_unit():
  """E[f] = p f1 + (1-p) f0; d/dtheta = p(1-p)(f1 - f0)."""
  theta = 0.7
  p = _sigmoid(theta)
  value, grad = diagnostics.exact_value_and_gradient(
      _one_unit_objective, tf.constant([theta]))
  np.testing.assert_allclose(value.numpy(), p * F1 + (1 - p) * F0, rtol=1e-6)
  np.testing.assert_allclose(grad.numpy(), [p * (1 - p) * (F1 - F0)],
                             rtol=1e-5)


def test_bernoulli_two_sample_bound_one_unit():
  """E[log mean(e^f(b1), e^f(b2))] over two independent samples:
  p^2 f1 + (1-p)^2 f0 + 2p(1-p) m with m = log((e^f1 + e^f0) / 2)."""
  theta = -0.4
  p = _sigmoid(theta)
  m = np.log((np.exp(F1) + np.exp(F0)) / 2)
  value, grad = diagnostics.exact_value_and_gradient(
      _one_unit_objective, tf.constant([theta]), num_samples=2)
  expected = p**2 * F1 + (1 - p)**2 * F0 + 2 * p * (1 - p) * m
  dp = p * (1 - p)
  expected_grad = dp * (2 * p * F1 - 2 * (1 - p) * F0 + 2 * (1 - 2 * p) * m)
  np.testing.assert_allclose(value.numpy(), expected, rtol=1e-6)
  np.testing.assert_allclose(grad.numpy(), [expected_grad], rtol=1e-5)


def test_bernoulli_two_units_batch():
  """Two independent units, f = b1 * b2: E = p1 p2, a batch of two."""
  theta = np.array([[0.3, -1.1], [2.0, 0.5]], np.float32)
  p = _sigmoid(theta.astype(np.float64))
  value, grad = diagnostics.exact_value_and_gradient(
      lambda b: b[..., 0] * b[..., 1], tf.constant(theta))
  np.testing.assert_allclose(value.numpy(), p[:, 0] * p[:, 1], rtol=1e-6)
  dp = p * (1 - p)
  np.testing.assert_allclose(
      grad.numpy(), np.stack([dp[:, 0] * p[:, 1], p[:, 0] * dp[:, 1]], -1),
      rtol=1e-5)


def test_categorical_expectation_one_variable():
  """E[f] = sum_c softmax(theta)_c f_c; gradient pi * (f - E f)."""
  theta = np.array([[0.2, -1.0, 1.5]], np.float32)
  f = np.array([1.0, -2.0, 0.5], np.float32)
  pi = np.exp(theta[0]) / np.exp(theta[0]).sum()
  value, grad = diagnostics.exact_value_and_gradient(
      lambda z: tf.reduce_sum(z[..., 0, :] * f, -1), tf.constant(theta),
      family="categorical")
  mean = float(pi @ f)
  np.testing.assert_allclose(value.numpy(), mean, rtol=1e-6)
  np.testing.assert_allclose(grad.numpy()[0], pi * (f - mean), rtol=1e-5,
                             atol=1e-7)
