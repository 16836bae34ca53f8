"""Bernoulli estimators against exact enumerated gradients and the contract."""

import numpy as np
import pytest
import tensorflow as tf

from tests import support
import tf_discrete
from tf_discrete import bernoulli
from tf_discrete import diagnostics

LOGITS = diagnostics.BERNOULLI_PROBLEM.logits
objective = diagnostics.BERNOULLI_PROBLEM.objective

# LOGITS, objective: the shared problem (logits up to ±6 so rare states
# matter; a non-linear objective with pairwise interactions between units).

# Every registered unbiased estimator of E_q[f], read from the registry so
# that a new one is tested the day it is registered.
SINGLE_BOUND = [name for name, est in bernoulli.REGISTRY.items()
                if est.facts.unbiased
                and est.facts.estimates is tf_discrete.Estimates.MEAN]
NUM_RUNS = 40000


def _bound_samples(name, num_samples):
  """K of the exact bound each estimator targets (its declared facts)."""
  est = bernoulli.get(name)
  return est.facts.bound_terms(est.evaluations(num_samples, [5]))


def test_available_lists_the_contract_names():
  contract = ["reinforce", "rloo", "ar", "arm", "disarm", "vimco",
              "local_disarm"]
  assert set(contract) <= set(bernoulli.available())


@pytest.mark.parametrize("name", SINGLE_BOUND)
@pytest.mark.parametrize("num_samples", [None, 4])
def test_unbiased_against_enumeration(name, num_samples):
  stats = diagnostics.estimator_stats(
      objective, LOGITS, name, num_runs=NUM_RUNS, num_samples=num_samples,
      seed=7)
  assert np.all(np.abs(stats.grad_z) < 4), (stats.grad_z, stats.grad_mean,
                                            stats.exact_grad)
  assert np.all(np.abs(stats.value_z) < 4), stats.value_z


@pytest.mark.parametrize("name,num_samples", [("vimco", 2), ("vimco", 3),
                                              ("local_disarm", 2),
                                              ("local_disarm", 4)])
def test_multi_sample_bound_unbiased(name, num_samples):
  k = _bound_samples(name, num_samples)
  stats = diagnostics.estimator_stats(
      objective, LOGITS[:4], name, num_runs=NUM_RUNS, num_samples=num_samples,
      seed=11, bound_samples=k)
  assert np.all(np.abs(stats.grad_z) < 4), (stats.grad_z, stats.grad_mean,
                                            stats.exact_grad)
  assert np.all(np.abs(stats.value_z) < 4), stats.value_z


def test_multi_sample_bound_differs_from_mean():
  """Guards the test above: the K-bound gradient is not E_q[f]'s."""
  _, g1 = diagnostics.exact_value_and_gradient(objective, LOGITS[:4])
  _, g2 = diagnostics.exact_value_and_gradient(objective, LOGITS[:4],
                                               num_samples=2)
  assert np.max(np.abs(g1.numpy() - g2.numpy())) > 0.05


def test_direct_logits_dependence_is_differentiated():
  """f(b; theta) = sum(b) * sum(theta): both paths enter the gradient."""
  logits = tf.constant([0.5, -0.3])
  fn = lambda b: tf.reduce_sum(b, -1) * tf.reduce_sum(logits)
  _, exact = diagnostics.exact_value_and_gradient(fn, logits)
  runs = 40000
  replicated = tf.broadcast_to(logits, [runs, 2])
  with tf.GradientTape() as tape:
    tape.watch(replicated)
    value = bernoulli.estimate(
        lambda b: tf.reduce_sum(b, -1) * tf.reduce_sum(replicated, -1),
        replicated, "disarm", seed=3)
    total = tf.reduce_sum(value)
  grads = tape.gradient(total, replicated).numpy()
  z = (grads.mean(0) - exact.numpy()) / (grads.std(0) / np.sqrt(runs))
  assert np.all(np.abs(z) < 4), z


def _grad_variance(name, num_samples=None):
  return diagnostics.estimator_stats(
      objective, LOGITS, name, num_runs=NUM_RUNS, num_samples=num_samples,
      seed=5).mean_grad_var


def test_disarm_variance_below_arm():
  assert _grad_variance("disarm") <= _grad_variance("arm")


def test_rloo_variance_below_reinforce():
  assert _grad_variance("rloo", 2) < _grad_variance("reinforce", 2)


def test_disarm_is_zero_where_pair_agrees():
  """Units whose pair members agree contribute exactly zero."""
  logits = tf.constant([[1e4, -1e4, 0.0]])
  with tf.GradientTape() as tape:
    tape.watch(logits)
    value = bernoulli.estimate(objective_3, logits, "disarm", seed=1)
  grad = tape.gradient(value, logits).numpy()
  assert grad[0, 0] == 0.0 and grad[0, 1] == 0.0


def objective_3(b):
  return tf.reduce_sum(b * [1.0, 2.0, 3.0], -1) ** 2


@pytest.mark.parametrize("name", bernoulli.available())
def test_same_seed_same_result_eager_function_xla(name):
  logits = tf.constant(np.random.RandomState(1).randn(3, 5), tf.float32)
  seed = tf.constant([4, 2])

  support.assert_same_in_eager_graph_xla(
      lambda logits, seed: bernoulli.estimate(
          objective, logits, name,
          seed=seed),
      logits, seed, tf.constant([4, 3]), grad_rtol=1e-5)


@pytest.mark.parametrize("name", bernoulli.available())
def test_extreme_logits_are_finite(name):
  logits = tf.constant([[1e4, -1e4, 3e3, -2e3, 0.0]])

  def elbo_like(b):
    # log p(b) under a fixed prior minus log q(b): finite only with stable
    # log-space code.
    log_q = -tf.reduce_sum(tf.nn.softplus(-(2 * b - 1) * logits), -1)
    return objective(b) - log_q

  with tf.GradientTape() as tape:
    tape.watch(logits)
    value = bernoulli.estimate(elbo_like, logits, name, seed=2)
  grad = tape.gradient(value, logits)
  assert np.all(np.isfinite(value.numpy()))
  assert np.all(np.isfinite(grad.numpy()))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_logits_give_non_finite_gradient(bad):
  """The bad example's value and all its gradients are NaN, not only the
  bad unit's; the other examples keep their finite estimates."""
  logits = tf.constant([[0.5, bad], [0.5, -0.3]])
  scale = tf.Variable(1.0)
  for name in ("disarm", "rloo", "vimco"):
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(logits)
      value = bernoulli.estimate(lambda b: scale * objective_2(b), logits,
                                 name, seed=1)
      bad_value, good_value = value[0], value[1]
    grad = tape.gradient(value, logits).numpy()
    assert np.isnan(bad_value.numpy()) and np.isfinite(good_value.numpy())
    assert np.all(np.isnan(grad[0])) and np.all(np.isfinite(grad[1]))
    # The objective's own (pathwise) gradient sees the NaN too.
    assert np.isnan(tape.gradient(bad_value, scale).numpy())
    assert np.isfinite(tape.gradient(good_value, scale).numpy())
    # Gradients of what leaves the bad example out stay clean.
    assert np.all(tape.gradient(good_value, logits).numpy()[0] == 0)


def objective_2(b):
  return tf.reduce_sum(b * [1.0, 2.0], -1)


def test_output_shapes_and_dtype():
  logits = tf.zeros([4, 3, 5], tf.float64)
  calls = []

  def fn(b):
    calls.append(b.shape)
    assert b.dtype == tf.float64
    return tf.reduce_sum(b, -1)

  value = bernoulli.estimate(fn, logits, "disarm", num_samples=6, seed=0)
  assert value.shape == (4, 3) and value.dtype == tf.float64
  assert calls == [tf.TensorShape([6, 4, 3, 5])]  # One batched call.


@pytest.mark.parametrize("name,expected", [("reinforce", 1), ("rloo", 2),
                                           ("ar", 1), ("arm", 2),
                                           ("disarm", 2), ("vimco", 2),
                                           ("local_disarm", 2)])
def test_default_evaluations(name, expected):
  assert bernoulli.get(name).evaluations(None, [5]) == expected


# ---------------------------------------------------------------------------
# Errors.
# ---------------------------------------------------------------------------


def test_unknown_estimator_lists_available():
  with pytest.raises(ValueError, match="estimator.*available: ar, arm"):
    bernoulli.estimate(objective, LOGITS, "dissarm")


def test_integer_logits_rejected():
  with pytest.raises(TypeError, match="`logits`.*floating"):
    bernoulli.estimate(objective, tf.constant([1, 2]), "disarm")


def test_scalar_logits_rejected():
  with pytest.raises(ValueError, match=r"`logits`.*\[\*batch, D\]"):
    bernoulli.estimate(objective, tf.constant(1.0), "disarm")


def test_objective_output_shape_checked():
  with pytest.raises(ValueError, match="`objective`.*shape"):
    bernoulli.estimate(lambda b: b, LOGITS, "disarm")


@pytest.mark.parametrize("name,num_samples,message", [
    ("rloo", 1, "at least 2"),
    ("disarm", 3, "even"),
    ("arm", 0, "at least 2"),
    ("vimco", 1, "at least 2"),
    ("local_disarm", 5, "even"),
    ("reinforce", 0, "at least 1"),
])
def test_invalid_num_samples(name, num_samples, message):
  with pytest.raises(ValueError, match=f"`num_samples`.*{message}"):
    bernoulli.estimate(objective, LOGITS, name, num_samples=num_samples)


def test_unknown_option_rejected():
  with pytest.raises(TypeError, match="takes no options"):
    bernoulli.estimate(objective, LOGITS, "disarm", temperature=1.0)


def test_bad_seed_rejected():
  with pytest.raises(ValueError, match="`seed`"):
    bernoulli.estimate(objective, LOGITS, "disarm", seed=[1, 2, 3])


@pytest.mark.parametrize("num_samples", [2.0, True, "2"])
def test_non_integer_num_samples_rejected(num_samples):
  with pytest.raises(TypeError, match="`num_samples`"):
    bernoulli.estimate(objective, LOGITS, "disarm", num_samples=num_samples)


def test_non_callable_objective_rejected():
  with pytest.raises(TypeError, match="`objective`"):
    bernoulli.estimate("f", LOGITS, "disarm")


def test_vimco_gradient_closed_form_two_samples():
  """K = 2: L = log((e^f1 + e^f2)/2), and replacing f1 by the (geometric)
  mean of the others gives f2, so the signals are L - f2 and L - f1; the
  gradient is sum_k signal_k (b_k - sigma(theta)) when f does not depend
  on the logits."""
  theta = tf.constant([[0.4, -0.8, 1.5]])
  weights = tf.constant([1.0, -2.0, 0.5])
  sigma = 1 / (1 + np.exp(-theta.numpy()))
  informative = 0
  for seed in range(6):
    seen = []

    def objective(b):
      seen.append(b)
      return tf.reduce_sum(b * weights, -1) + tf.reduce_prod(b, -1)

    with tf.GradientTape() as tape:
      tape.watch(theta)
      value = bernoulli.estimate(objective, theta, "vimco", num_samples=2,
                                 seed=[3, seed])
    grad = tape.gradient(value, theta).numpy()
    b = seen[0].numpy()  # [2, 1, 3]
    f = objective(tf.constant(b)).numpy()[:, 0]
    bound = np.log((np.exp(f[0]) + np.exp(f[1])) / 2)
    signals = np.array([bound - f[1], bound - f[0]])
    expected = (signals[:, None] * (b[:, 0] - sigma)).sum(0)
    np.testing.assert_allclose(value.numpy(), [bound], rtol=1e-6)
    np.testing.assert_allclose(grad[0], expected, rtol=1e-5, atol=1e-6)
    informative += bool(np.any(np.abs(signals) > 1e-3))
  assert informative >= 2
