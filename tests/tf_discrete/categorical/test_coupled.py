"""Coupled estimators' building blocks: sorting, stick-breaking and tree
representations and their Jacobians."""

import numpy as np
import pytest
import tensorflow as tf

from tf_discrete.categorical import coupled


@pytest.mark.parametrize("order", ["ascending", "descending", "abs"])
def test_sort_permutation_is_a_permutation_with_ties(order):
  theta = tf.constant([[0.0, -1.0, 0.0, 1.0, -1.0]])
  perm, rank = coupled.sort_permutation(theta, order)
  np.testing.assert_array_equal(np.sort(perm.numpy()[0]), np.arange(5))
  np.testing.assert_array_equal(
      np.take_along_axis(rank.numpy(), perm.numpy(), -1)[0], np.arange(5))
  keys = {"ascending": theta, "descending": -theta, "abs": tf.abs(theta)}
  sorted_keys = np.take_along_axis(keys[order].numpy(), perm.numpy(), -1)
  assert np.all(np.diff(sorted_keys[0]) >= 0)


def test_stick_breaking_probabilities():
  theta = tf.constant([[1.0, -2.0, 0.5, 3.0]])
  alpha, _ = coupled.stick_breaking_logits(theta)
  s = tf.sigmoid(alpha).numpy()[0]
  probs = [s[0], (1 - s[0]) * s[1], (1 - s[0]) * (1 - s[1]) * s[2],
           (1 - s[0]) * (1 - s[1]) * (1 - s[2])]
  np.testing.assert_allclose(probs, tf.nn.softmax(theta)[0], rtol=1e-5)


def test_tree_probabilities():
  theta = tf.constant([[1.0, -2.0, 0.5, 3.0]])
  beta, _ = coupled.tree_logits(theta)
  s = tf.sigmoid(beta).numpy()[0]  # P(left) at nodes 0, 1, 2.
  probs = [s[0] * s[1], s[0] * (1 - s[1]), (1 - s[0]) * s[2],
           (1 - s[0]) * (1 - s[2])]
  np.testing.assert_allclose(probs, tf.nn.softmax(theta)[0], rtol=1e-5)


def test_stick_and_tree_jacobians_match_autodiff():
  theta = tf.constant(np.random.RandomState(0).randn(2, 8), tf.float32)
  upstream = tf.constant(np.random.RandomState(1).randn(2, 7), tf.float32)
  for convert in (coupled.stick_breaking_logits, coupled.tree_logits):
    with tf.GradientTape() as tape:
      tape.watch(theta)
      logits, jac = convert(theta)
    expected = tape.gradient(logits, theta, output_gradients=upstream)
    if convert is coupled.stick_breaking_logits:
      got = coupled.stick_breaking_vjp(upstream, jac)
    else:
      got = tf.einsum("...n,...ni->...i", upstream, jac)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
