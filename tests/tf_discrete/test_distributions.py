"""tensorflow-probability interop: tf_discrete.estimate on tfd distributions."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tf_discrete
from tf_discrete import bernoulli
from tf_discrete import categorical
from tf_discrete import diagnostics

tfd = tfp.distributions


def _weights(shape, seed=0):
  return tf.constant(np.random.RandomState(seed).randn(*shape), tf.float32)


def test_bernoulli_matches_the_family_and_speaks_its_dtype():
  """Independent(Bernoulli) over [B, D] equals bernoulli.estimate on the
  same logits and seed; the objective sees int32 0/1 samples."""
  logits = tf.Variable([[0.3, -1.0, 2.0], [1.5, 0.0, -0.5]])
  w = _weights([3])
  seen = []

  def objective(b):
    seen.append(b)
    return tf.reduce_sum(tf.cast(b, tf.float32) * w, -1)

  with tf.GradientTape(persistent=True) as tape:
    ours = tf_discrete.estimate(
        objective, tfd.Independent(tfd.Bernoulli(logits=logits), 1),
        "disarm", seed=[1, 2])
    direct = bernoulli.estimate(lambda b: tf.reduce_sum(b * w, -1), logits,
                                "disarm", seed=[1, 2])
  assert seen[0].dtype == tf.int32 and seen[0].shape == (2, 2, 3)
  np.testing.assert_allclose(ours.numpy(), direct.numpy())
  np.testing.assert_allclose(tape.gradient(ours, logits).numpy(),
                             tape.gradient(direct, logits).numpy())


def test_scalar_bernoulli_batch_is_unbiased_from_probs():
  """A plain Bernoulli with batch shape [4] built from probs: each element
  is its own unit; the mean gradient w.r.t. probs is d/dp E[f] = f(1)-f(0)."""
  probs = tf.Variable([0.2, 0.5, 0.7, 0.9])
  f1, f0 = tf.constant([1.0, -2.0, 0.5, 3.0]), tf.constant([0.0, 1.0, 2.0,
                                                             -1.0])

  def objective(b):
    b = tf.cast(b, tf.float32)
    return b * f1 + (1 - b) * f0

  @tf.function(jit_compile=True)
  def grad(seed):
    with tf.GradientTape() as tape:
      value = tf.reduce_sum(tf_discrete.estimate(
          objective, tfd.Bernoulli(probs=probs, dtype=tf.int32), "rloo",
          num_samples=4, seed=seed))
    return tape.gradient(value, probs)

  grads = np.stack([grad(tf.constant([0, s])).numpy() for s in range(3000)])
  exact = (f1 - f0).numpy()
  z = (grads.mean(0) - exact) / (grads.std(0) / np.sqrt(len(grads)))
  assert np.all(np.abs(z) < 5), z


@pytest.mark.parametrize("one_hot", [False, True])
def test_categorical_matches_exact_gradient(one_hot):
  """Categorical (indices) and OneHotCategorical, one variable per batch
  element: mean of RLOO gradients = exact enumerated gradient."""
  logits = tf.Variable([[0.5, -1.0, 2.0], [0.0, 1.0, -0.5]])
  f = tf.constant([1.0, -2.0, 0.5])
  dist = (tfd.OneHotCategorical(logits=logits) if one_hot
          else tfd.Categorical(logits=logits))

  def objective(z):
    if one_hot:
      assert z.shape[-1] == 3
      return tf.reduce_sum(tf.cast(z, tf.float32) * f, -1)
    assert z.dtype == tf.int32
    return tf.gather(f, z)

  @tf.function
  def grad(seed):
    with tf.GradientTape() as tape:
      value = tf.reduce_sum(tf_discrete.estimate(
          objective, dist, "rloo", num_samples=3, seed=seed))
    return tape.gradient(value, logits)

  grads = np.stack([grad(tf.constant([0, s])).numpy() for s in range(3000)])
  _, exact = diagnostics.exact_value_and_gradient(
      lambda z: tf.reduce_sum(z[..., 0, :] * f, -1),
      logits[:, tf.newaxis, :], family="categorical")
  exact = exact.numpy()[:, 0, :]
  z = (grads.mean(0) - exact) / (grads.std(0) / np.sqrt(len(grads)) + 1e-6)
  assert np.all(np.abs(z) < 5), z


def test_eager_graph_and_xla_agree():
  logits = tf.constant([[0.3, -1.0], [2.0, 0.1]])
  dist = tfd.Independent(tfd.OneHotCategorical(logits=logits), 1)

  def run(seed):
    return tf_discrete.estimate(
        lambda z: tf.reduce_sum(tf.cast(z, tf.float32)[..., 0], -1), dist,
        "disarm_sb", seed=seed)

  eager = run(tf.constant([4, 5])).numpy()
  graph = tf.function(run)(tf.constant([4, 5])).numpy()
  xla = tf.function(run, jit_compile=True)(tf.constant([4, 5])).numpy()
  np.testing.assert_allclose(eager, graph)
  np.testing.assert_allclose(eager, xla)


def test_clear_errors():
  with pytest.raises(TypeError, match="tfd.Bernoulli, tfd.Categorical"):
    tf_discrete.estimate(lambda x: x, tfd.Normal(0.0, 1.0))
  with pytest.raises(ValueError, match="available"):
    tf_discrete.estimate(lambda z: tf.cast(z, tf.float32),
                         tfd.Categorical(logits=[0.0, 1.0]), "disarm")


def test_log_probs_agree_with_tfp_at_extreme_logits():
  """The families' log q and TFP's, including |logits| = 1e4."""
  logits = tf.constant([[-1e4, -3.0, 0.0, 2.5, 1e4]])
  b = tf.constant([[1.0, 0.0, 1.0, 1.0, 0.0]])
  ours = bernoulli.FAMILY.log_prob(b, logits)
  theirs = tf.reduce_sum(tfd.Bernoulli(logits=logits).log_prob(b), -1)
  np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)
  cat_logits = tf.constant([[[1e4, 0.0, -1e4], [0.5, -0.5, 2.0]]])
  z = tf.one_hot([[2, 1]], 3)
  ours = categorical.FAMILY.log_prob(z, cat_logits)
  theirs = tf.reduce_sum(
      tfd.OneHotCategorical(logits=cat_logits).log_prob(z), -1)
  np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)
