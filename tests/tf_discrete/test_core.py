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


# ---------------------------------------------------------------------------
# Draws carry typed noise.
# ---------------------------------------------------------------------------


def _estimators():
  from tf_discrete import bernoulli, categorical  # pylint: disable=g-import-not-at-top
  for module, shape in ((bernoulli, [3, 5]), (categorical, [3, 2, 4])):
    for name, estimator in module.REGISTRY.items():
      yield module, shape, name, estimator


@pytest.mark.parametrize("module,shape,name,estimator", list(_estimators()),
                         ids=lambda x: getattr(x, "name", None))
def test_every_draw_has_typed_frozen_noise(module, shape, name, estimator):
  import dataclasses  # pylint: disable=g-import-not-at-top
  del module
  logits = tf.zeros(shape)
  num = estimator.evaluations(None, shape[1:])
  draw = estimator.sample(logits, num, tf.constant([1, 2]),
                          **estimator.resolve_options({}))
  assert isinstance(draw, _core.Draw)
  # An estimator with control-variate state draws the hard samples here and
  # builds its relaxed evaluations from the noise when it evaluates.
  if not estimator.facts.trainable_state:
    assert draw.samples.shape[0] == num
  noise = draw.noise
  assert dataclasses.is_dataclass(noise) and not isinstance(noise, type), name
  assert type(noise).__dataclass_params__.frozen, name
  with pytest.raises(dataclasses.FrozenInstanceError):
    setattr(noise, dataclasses.fields(noise)[0].name, None)
  assert not isinstance(noise, dict)


def test_draw_is_generic_over_its_noise():
  from tf_discrete.bernoulli import augment  # pylint: disable=g-import-not-at-top
  alias = _core.Draw[augment.AntitheticNoise]
  draw = alias(tf.zeros([2, 1]), None)
  assert isinstance(draw, _core.Draw) and draw.noise is None


# --------------------------------------------------------------------------
# Baselines and bounds against hand-computed cases.


def test_leave_one_out_mean_closed_form():
  values = tf.constant([[1.0, 10.0], [2.0, 20.0], [6.0, 60.0]])
  np.testing.assert_allclose(_core.leave_one_out_mean(values).numpy(),
                             [[4.0, 40.0], [3.5, 35.0], [1.5, 15.0]])


def test_leave_one_out_log_mean_exp_closed_form():
  """Entry k: the K-sample bound with term k replaced by the geometric
  mean (mean in log space) of the others."""
  # K = 2: the other term replaces term k, so entry k is the other value.
  np.testing.assert_allclose(
      _core.leave_one_out_log_mean_exp(tf.constant([1.0, 3.0])).numpy(),
      [3.0, 1.0], rtol=1e-6)
  # K = 3, by hand.
  v = np.array([0.0, 1.0, 2.5])
  expected = [np.log((np.exp(1.0) + np.exp(2.5) + np.exp(1.75)) / 3),
              np.log((np.exp(0.0) + np.exp(2.5) + np.exp(1.25)) / 3),
              np.log((np.exp(0.0) + np.exp(1.0) + np.exp(0.5)) / 3)]
  np.testing.assert_allclose(
      _core.leave_one_out_log_mean_exp(tf.constant(v, tf.float32)).numpy(),
      expected, rtol=1e-6)
  np.testing.assert_allclose(
      _core.log_mean_exp(tf.constant(v, tf.float32)).numpy(),
      np.log(np.mean(np.exp(v))), rtol=1e-6)
