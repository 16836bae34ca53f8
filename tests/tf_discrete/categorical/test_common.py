"""Shared categorical sampling pieces."""

import numpy as np
import pytest
import tensorflow as tf

from tf_discrete.categorical import _common


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_inverse_cdf_index_frequencies(dtype):
  """Exact frequencies, rare categories included (z-test per category)."""
  theta = tf.constant([[3.0, 0.0, -4.0, 1.0, -9.0]], dtype)
  n = 400000
  index = _common.inverse_cdf_index(theta, n, tf.constant([2, 3])).numpy()
  assert index.shape == (n, 1) and index.min() >= 0 and index.max() <= 4
  freq = np.bincount(index.ravel(), minlength=5) / n
  p = tf.nn.softmax(tf.cast(theta, tf.float64))[0].numpy()
  z = (freq - p) / np.sqrt(p * (1 - p) / n)
  assert np.all(np.abs(z) < 4.5), (freq, p)
  xla = tf.function(lambda: _common.inverse_cdf_index(
      theta, 10, tf.constant([2, 3])), jit_compile=True)()
  np.testing.assert_array_equal(xla, index[:10])
