"""Shared numerical pieces of tf_discrete._core against closed forms."""

import numpy as np
import pytest
import tensorflow as tf

from tf_discrete import _core


def _softplus64(x):
  x = np.asarray(x, np.float64)
  return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def test_softplus_matches_float64_reference():
  x = np.concatenate([np.linspace(-80, 80, 160_001),
                      np.random.RandomState(0).randn(10_000) * 5,
                      [0.0, 2.0**-12, -2.0**-12, 7.0, -7.0]]).astype(np.float32)
  got = _core.softplus(tf.constant(x)).numpy()
  ref = _softplus64(x)
  # float32 rounding of the result (values up to 80) bounds the error.
  np.testing.assert_allclose(got, ref, rtol=2e-7, atol=1e-7)
  # Where softplus is tiny, the relative error stays small too.
  tiny = x < -10
  np.testing.assert_allclose(got[tiny], ref[tiny], rtol=1e-6)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_softplus_gradient_is_sigmoid_including_zero(dtype):
  x = tf.constant([-30.0, -1.0, 0.0, 1e-8, 2.0, 30.0], dtype)
  with tf.GradientTape() as outer:
    outer.watch(x)
    with tf.GradientTape() as inner:
      inner.watch(x)
      y = _core.softplus(x)
    grad = inner.gradient(y, x)
  hessian = outer.gradient(grad, x)
  s = 1 / (1 + np.exp(-x.numpy().astype(np.float64)))
  np.testing.assert_allclose(grad.numpy(), s, rtol=1e-6)
  np.testing.assert_allclose(hessian.numpy(), s * (1 - s), rtol=1e-5,
                             atol=1e-12)
  assert grad.numpy()[2] == 0.5  # Not 0 or 1 from a kink's subgradient.


def test_softplus_extremes_and_xla():
  x = tf.constant([1e4, -1e4, 0.0, 88.0, -88.0])
  eager = _core.softplus(x).numpy()
  xla = tf.function(_core.softplus, jit_compile=True)(x).numpy()
  np.testing.assert_allclose(eager, [1e4, 0.0, np.log(2), 88.0, 0.0],
                             atol=1e-7)
  np.testing.assert_allclose(xla, eager, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("shape", [[1], [7], [4, 9], [3, 5, 2]])
def test_uniform_same_in_eager_graph_and_xla(shape):
  seed = tf.constant([5, 11])
  eager = _core.uniform(shape, seed, tf.float32).numpy()
  graph = tf.function(lambda: _core.uniform(shape, seed, tf.float32))()
  xla = tf.function(lambda: _core.uniform(shape, seed, tf.float32),
                    jit_compile=True)()
  assert eager.shape == tuple(shape)
  np.testing.assert_array_equal(eager, graph.numpy())
  np.testing.assert_array_equal(eager, xla.numpy())


def test_uniform_dynamic_shape_in_graph():
  fn = tf.function(lambda x: _core.uniform(tf.shape(x), tf.constant([1, 2]),
                                           tf.float64),
                   input_signature=[tf.TensorSpec([None, 3])])
  assert fn(tf.zeros([5, 3])).shape == (5, 3)


def test_uniform_is_uniform_on_the_24_bit_grid():
  u = _core.uniform([200_001], tf.constant([0, 1]), tf.float32).numpy()
  assert u.min() >= 0 and u.max() < 1
  np.testing.assert_array_equal(u * 2**24, np.floor(u * 2**24))
  # Mean and variance of U[0,1): z-scores with n = 200,001.
  n = u.size
  assert abs(u.mean() - 0.5) / np.sqrt(1 / 12 / n) < 4
  assert abs(u.var() - 1 / 12) / np.sqrt(1 / 180 / n) < 4
  # Consecutive words (low and high halves of one Philox output) are not
  # correlated.
  r = np.corrcoef(u[:-1:2], u[1::2])[0, 1]
  assert abs(r) * np.sqrt(n / 2) < 4
