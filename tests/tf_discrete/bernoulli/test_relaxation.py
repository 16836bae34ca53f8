"""Bernoulli relaxation and straight-through estimators: what theory
guarantees (exactness, unbiasedness where it holds, limits, Rao-Blackwell),
and the contract (seeds, numerics, errors, a variable temperature)."""

import numpy as np
import pytest
import tensorflow as tf

from tests import support
import tf_discrete
from tf_discrete import bernoulli
from tf_discrete import diagnostics
from tf_discrete.bernoulli import _common

RELAXATIONS = ["gumbel_softmax", "straight_through", "st_gumbel_softmax",
               "gumbel_rao", "reinmax"]
WITH_TEMPERATURE = [n for n in RELAXATIONS if n != "straight_through"]
HARD_FORWARD = [n for n in RELAXATIONS if n != "gumbel_softmax"]

PROBLEM = diagnostics.BERNOULLI_PROBLEM
LOGITS = PROBLEM.logits
objective = PROBLEM.objective
NUM_RUNS = 40000

# Multilinear in the units: a sum of products of distinct units.
_A = np.array([1.0, -2.0, 0.5, 3.0, -1.0], np.float32)
_PAIRS = np.triu(np.random.RandomState(1).randn(5, 5), 1).astype(np.float32)


def multilinear(b):
  return (tf.reduce_sum(b * _A, -1)
          + tf.einsum("...i,ij,...j->...", b, _PAIRS, b)
          - 2.5 * b[..., 0] * b[..., 1] * b[..., 4]
          + 1.5 * b[..., 1] * b[..., 2] * b[..., 3])


def linear(b):
  return tf.reduce_sum(b * _A, -1)


def _value_and_grad(name, fn, logits, seed=1, num_samples=None, **options):
  logits = tf.convert_to_tensor(logits)
  with tf.GradientTape() as tape:
    tape.watch(logits)
    value = bernoulli.estimate(fn, logits, name, num_samples=num_samples,
                               seed=seed, **options)
    total = tf.reduce_sum(value)
  return value, tape.gradient(total, logits)


def _replicated(logits, runs):
  return tf.broadcast_to(tf.constant(logits), [runs] + list(logits.shape))


# ---------------------------------------------------------------------------
# Facts.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", RELAXATIONS)
def test_declared_facts(name):
  facts = bernoulli.get(name).facts
  assert facts.estimates is tf_discrete.Estimates.MEAN
  assert facts.cost.default_for([5]) == 1 and not facts.cost.fixed
  assert facts.unbiased is False and facts.needs_objective_gradient is True
  assert not facts.trainable_state
  expected = {"straight_through": (), "gumbel_rao": ("temperature",
                                                     "num_rao_samples")}
  assert facts.option_names == expected.get(name, ("temperature",))
  doc = type(bernoulli.get(name)).__doc__
  assert "Cost:" in doc and "biased" in doc.lower() and "math::" in doc


def test_declared_defaults():
  get = bernoulli.get
  assert get("gumbel_softmax").facts.option("temperature").default == 0.5
  assert get("reinmax").facts.option("temperature").default == 1.0
  assert get("gumbel_rao").facts.option("num_rao_samples").default == 10


# ---------------------------------------------------------------------------
# What theory guarantees.
# ---------------------------------------------------------------------------


def test_straight_through_unbiased_for_multilinear_objective():
  stats = diagnostics.estimator_stats(multilinear, LOGITS, "straight_through",
                                      num_runs=NUM_RUNS, seed=7)
  assert np.all(np.abs(stats.grad_z) < 4), (stats.grad_z, stats.grad_mean,
                                            stats.exact_grad)
  assert np.all(np.abs(stats.value_z) < 4), stats.value_z
  assert stats.mean_grad_var > 0  # Not trivially exact.


def test_straight_through_biased_beyond_multilinear():
  """Guards the test above: on the shared problem (b'Wb has b_d^2 terms, and
  a sine) the bias is far above the Monte Carlo noise."""
  stats = diagnostics.estimator_stats(objective, LOGITS, "straight_through",
                                      num_runs=NUM_RUNS, seed=7)
  assert stats.relative_bias > 10 * stats.relative_noise, (
      stats.relative_bias, stats.relative_noise)


def test_straight_through_exact_for_linear_objective():
  logits = tf.constant(np.random.RandomState(2).randn(6, 5) * 3, tf.float32)
  _, exact = diagnostics.exact_value_and_gradient(linear, logits)
  for seed in (1, 2):
    _, grad = _value_and_grad("straight_through", linear, logits, seed=seed,
                              num_samples=3)
    np.testing.assert_allclose(grad, exact, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("num_samples", [None, 3])
def test_reinmax_unbiased_for_linear_objective(num_samples):
  """E[2 pi (1 - pi)] = 3/2 sigma'(theta) at temperature 1."""
  stats = diagnostics.estimator_stats(linear, LOGITS[:4].tolist() + [0.0],
                                      "reinmax", num_runs=NUM_RUNS, seed=3,
                                      num_samples=num_samples, temperature=1.0)
  assert np.all(np.abs(stats.grad_z) < 4), (stats.grad_z, stats.grad_mean,
                                            stats.exact_grad)
  assert stats.mean_grad_var > 0  # Exact in mean only.


def test_reinmax_biased_for_linear_objective_at_other_temperature():
  stats = diagnostics.estimator_stats(linear, [0.3, -1.2, 2.0, 0.0, 1.0],
                                      "reinmax", num_runs=NUM_RUNS, seed=3,
                                      temperature=0.3)
  assert np.max(np.abs(stats.grad_z)) > 8


def test_gumbel_softmax_value_approaches_expectation_as_temperature_drops():
  biases = []
  for temperature in (2.0, 0.5, 0.1):
    stats = diagnostics.estimator_stats(
        objective, LOGITS, "gumbel_softmax", num_runs=NUM_RUNS, seed=5,
        temperature=temperature)
    biases.append(float(np.abs(stats.value_mean - stats.exact_value)))
  assert biases[0] > biases[1] > biases[2], biases
  assert biases[2] < 0.1 * biases[0], biases


def test_gumbel_softmax_gradient_bias_drops_with_temperature():
  bias = [diagnostics.estimator_stats(
      objective, LOGITS, "gumbel_softmax", num_runs=NUM_RUNS, seed=5,
      temperature=t).relative_bias for t in (2.0, 0.5, 0.1)]
  assert bias[0] > bias[1] > bias[2], bias


def test_gumbel_rao_with_one_draw_is_st_gumbel_softmax():
  logits = tf.constant(np.random.RandomState(3).randn(50, 5) * 2, tf.float32)
  for temperature in (0.3, 1.0):
    st = _value_and_grad("st_gumbel_softmax", objective, logits, seed=4,
                         temperature=temperature)
    rao = _value_and_grad("gumbel_rao", objective, logits, seed=4,
                          temperature=temperature, num_rao_samples=1)
    np.testing.assert_array_equal(st[0], rao[0])
    np.testing.assert_allclose(st[1], rao[1], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("temperature", [0.5, 1.0])
def test_gumbel_rao_same_mean_lower_variance_than_st_gumbel_softmax(
    temperature):
  """Same seed: same hard samples and forward noise; the Rao-Blackwellized
  surrogate has the same conditional mean, so the paired difference has
  mean zero, and less variance."""
  replicated = _replicated(LOGITS, NUM_RUNS)
  _, st = _value_and_grad("st_gumbel_softmax", objective, replicated, seed=9,
                          temperature=temperature)
  _, rao = _value_and_grad("gumbel_rao", objective, replicated, seed=9,
                           temperature=temperature, num_rao_samples=10)
  st, rao = st.numpy().astype(np.float64), rao.numpy().astype(np.float64)
  diff = rao - st
  scale = diff.std(0) / np.sqrt(NUM_RUNS)
  z = diff.mean(0) / np.maximum(scale, 1e-30)
  assert np.all(np.abs(z) < 4), z
  assert np.all(rao.var(0) <= st.var(0) + 1e-12), (rao.var(0), st.var(0))
  assert rao.var(0).mean() < 0.8 * st.var(0).mean()


def test_conditional_logistic_draws_have_the_conditional_law():
  """s_k | b from the inverse CDF against forward draws with the same b."""
  theta = tf.constant([0.3, -1.2, 2.0, 0.0, -4.0], tf.float64)
  n = 200000
  logistic = _common.logistic_noise([n, 5], tf.constant([1, 2]), tf.float64)
  perturbed = theta + logistic
  hard = _common.hard_threshold(perturbed, tf.float64)
  v = _common.open_uniform([1, n, 5], tf.constant([3, 4]), tf.float64)
  conditional = _common.conditional_perturbed_logits(theta, hard, v)[0]
  np.testing.assert_array_equal(conditional.numpy() > 0, hard.numpy() == 1)
  for fn in (lambda s: tf.sigmoid(s) * tf.sigmoid(-s),
             lambda s: tf.sigmoid(s / 3.0), lambda s: tf.tanh(s / 5.0)):
    diff = (fn(conditional) - fn(perturbed)).numpy()
    z = diff.mean(0) / (diff.std(0) / np.sqrt(n))
    assert np.all(np.abs(z) < 4.5), z


def test_conditional_draws_finite_for_extreme_logits():
  theta = tf.constant([1e4, -1e4, 3e3, -2e3, 0.0, 30.0, -30.0])
  hard = tf.constant([[1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0]])
  v = _common.open_uniform([4, 1, 7], tf.constant([0, 1]), tf.float32)
  s = _common.conditional_perturbed_logits(theta, hard, v).numpy()
  assert np.all(np.isfinite(s))
  assert np.all((s > 0) == (hard.numpy() == 1)), s


# ---------------------------------------------------------------------------
# The objective sees differentiable samples; decoders keep their gradient.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", RELAXATIONS)
def test_one_batched_call_with_contract_shapes(name):
  logits = tf.constant(np.random.RandomState(0).randn(4, 3, 5), tf.float32)
  calls = []

  def fn(b):
    calls.append(b)
    return objective(b)

  value = bernoulli.estimate(fn, logits, name, num_samples=6, seed=0)
  assert value.shape == (4, 3)
  assert len(calls) == 1
  samples = calls[0].numpy()
  assert samples.shape == (6, 4, 3, 5) and calls[0].dtype == tf.float32
  assert samples.min() >= 0 and samples.max() <= 1
  if name in HARD_FORWARD:
    assert set(np.unique(samples)) <= {0.0, 1.0}
    np.testing.assert_allclose(value, tf.reduce_mean(objective(samples), 0),
                               rtol=1e-6)
  else:
    assert 0 < np.mean((samples > 0) & (samples < 1))


@pytest.mark.parametrize("name", HARD_FORWARD)
def test_hard_samples_and_value_are_those_of_q(name):
  stats = diagnostics.estimator_stats(objective, LOGITS, name, num_runs=20000,
                                      seed=2)
  assert np.all(np.abs(stats.value_z) < 4), stats.value_z


@pytest.mark.parametrize("name", RELAXATIONS)
def test_decoder_variables_get_the_pathwise_gradient(name):
  weights = tf.Variable([1.0, -2.0, 0.5])
  logits = tf.constant([[0.3, -0.4, 1.0], [2.0, 0.0, -1.0]])
  seen = []

  def fn(b):
    seen.append(b)
    return tf.reduce_sum(b * weights, -1)

  with tf.GradientTape() as tape:
    tape.watch(logits)
    value = bernoulli.estimate(fn, logits, name, num_samples=4, seed=3)
    total = tf.reduce_sum(value)
  d_weights, d_logits = tape.gradient(total, [weights, logits])
  expected = tf.reduce_sum(tf.reduce_mean(seen[0], 0), 0)
  np.testing.assert_allclose(d_weights, expected, rtol=1e-6)
  assert np.all(np.isfinite(d_logits)) and np.any(d_logits.numpy() != 0)


@pytest.mark.parametrize("name", RELAXATIONS)
def test_direct_logits_dependence_adds_to_the_surrogate(name):
  """f(b; theta) = <a, b> + sum(theta): the direct path adds exactly 1."""
  logits = tf.constant([[0.3, -0.4, 1.0]])
  a = tf.constant([1.0, -2.0, 0.5])
  grads = []
  for direct in (False, True):
    with tf.GradientTape() as tape:
      tape.watch(logits)
      fn = lambda b, d=direct: (tf.reduce_sum(b * a, -1) +
                                (tf.reduce_sum(logits, -1) if d else 0.0))
      value = bernoulli.estimate(fn, logits, name, seed=5)
    grads.append(tape.gradient(value, logits).numpy())
  np.testing.assert_allclose(grads[1] - grads[0], 1.0, rtol=1e-6)


# ---------------------------------------------------------------------------
# Seeds and numerics.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name,options", [
    ("gumbel_softmax", {}), ("gumbel_softmax", {"temperature": 0.1}),
    ("straight_through", {}), ("st_gumbel_softmax", {"temperature": 0.5}),
    ("gumbel_rao", {}), ("gumbel_rao", {"num_rao_samples": 3}),
    ("reinmax", {}), ("reinmax", {"temperature": 2.0}),
])
def test_same_seed_same_result_eager_function_xla(name, options):
  logits = tf.constant(np.random.RandomState(1).randn(3, 5) * 3, tf.float32)
  seed = tf.constant([4, 2])

  support.assert_same_in_eager_graph_xla(
      lambda logits, seed: bernoulli.estimate(
          objective, logits, name,
          num_samples=2, seed=seed, **options),
      logits, seed, tf.constant([4, 3]), grad_rtol=1e-5)


@pytest.mark.parametrize("name", RELAXATIONS)
@pytest.mark.parametrize("temperature", [None, 0.05])
def test_extreme_logits_are_finite(name, temperature):
  logits = tf.constant([[1e4, -1e4, 3e3, -2e3, 0.0],
                        [-1e4, 1e4, 1e4, -1e4, 50.0]])
  options = {} if temperature is None or name == "straight_through" else {
      "temperature": temperature}

  def elbo_like(b):
    log_q = -tf.reduce_sum(tf.nn.softplus(-(2 * b - 1) * logits), -1)
    return objective(b) - log_q

  for jit in (False, True):
    value, grad = tf.function(
        lambda x: _value_and_grad(name, elbo_like, x, seed=2, num_samples=3,
                                  **options), jit_compile=jit)(logits)
    assert np.all(np.isfinite(value.numpy())), value
    assert np.all(np.isfinite(grad.numpy())), grad


@pytest.mark.parametrize("name", RELAXATIONS)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_logits_give_non_finite_gradient(name, bad):
  logits = tf.constant([[0.5, bad], [0.5, -0.3]])
  value, grad = _value_and_grad(
      name, lambda b: tf.reduce_sum(b * [1.0, 2.0], -1), logits)
  assert np.isnan(value.numpy()[0]) and np.isfinite(value.numpy()[1])
  assert np.all(np.isnan(grad.numpy()[0]))
  assert np.all(np.isfinite(grad.numpy()[1]))


@pytest.mark.parametrize("name", RELAXATIONS)
@pytest.mark.parametrize("dtype", [tf.float64, tf.float16])
def test_dtypes(name, dtype):
  logits = tf.constant(np.random.RandomState(0).randn(4, 5), dtype)
  seen = []

  def fn(b):
    seen.append(b.dtype)
    return tf.reduce_sum(b * tf.constant(_A, dtype), -1)

  value, grad = _value_and_grad(name, fn, logits)
  assert seen == [dtype] and value.dtype == dtype and grad.dtype == dtype
  assert np.all(np.isfinite(grad.numpy()))


# ---------------------------------------------------------------------------
# A non-differentiable objective is refused clearly.
# ---------------------------------------------------------------------------

_TABLE = tf.constant([0.5, 2.0])

NON_DIFFERENTIABLE = {
    "cast": lambda b: tf.cast(tf.reduce_sum(tf.cast(b, tf.int32), -1),
                              tf.float32),
    "stop_gradient": lambda b: tf.reduce_sum(tf.stop_gradient(b), -1),
    "round": lambda b: tf.reduce_sum(tf.round(b), -1),
    "index": lambda b: tf.reduce_sum(
        tf.gather(_TABLE, tf.cast(b > 0.5, tf.int32)), -1),
}


@pytest.mark.parametrize("name", RELAXATIONS)
@pytest.mark.parametrize("kind", sorted(NON_DIFFERENTIABLE))
def test_non_differentiable_objective_is_refused(name, kind):
  message = (rf"Estimator '{name}' needs the gradient of `objective` with "
             rf"respect to its samples.*not differentiable")
  with pytest.raises(ValueError, match=message):
    bernoulli.estimate(NON_DIFFERENTIABLE[kind], LOGITS, name, seed=0)
  with pytest.raises(ValueError, match=message):  # Also while tracing.
    tf.function(lambda x: bernoulli.estimate(
        NON_DIFFERENTIABLE[kind], x, name, seed=0))(tf.constant(LOGITS))


def test_other_estimators_accept_non_differentiable_objectives():
  for name, est in bernoulli.REGISTRY.items():
    if not est.facts.needs_objective_gradient:
      bernoulli.estimate(NON_DIFFERENTIABLE["index"], LOGITS, name, seed=0)


# ---------------------------------------------------------------------------
# Options: a temperature variable, validation.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", WITH_TEMPERATURE)
@pytest.mark.parametrize("jit", [False, True])
def test_temperature_variable_is_read_at_every_call(name, jit):
  temperature = tf.Variable(1.0)
  logits = tf.constant(np.random.RandomState(4).randn(8, 5), tf.float32)
  traces = []

  @tf.function(jit_compile=jit)
  def run(logits):
    traces.append(1)
    with tf.GradientTape() as tape:
      tape.watch(logits)
      value = bernoulli.estimate(objective, logits, name, seed=[1, 2],
                                 temperature=temperature)
      total = tf.reduce_sum(value)
    d_logits, d_temperature = tape.gradient(total, [logits, temperature])
    assert d_temperature is None  # A hyperparameter: no gradient.
    return value, d_logits

  first = run(logits)
  temperature.assign(0.2)
  second = run(logits)
  assert len(traces) == 1
  assert not np.allclose(first[1], second[1])
  fixed = _value_and_grad(name, objective, logits, seed=[1, 2],
                          temperature=0.2)
  np.testing.assert_allclose(second[0], fixed[0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(second[1], fixed[1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("temperature", [tf.constant(0.7),
                                         tf.constant(0.7, tf.float64),
                                         np.float32(0.7), np.array(0.7), 7e-1])
def test_temperature_accepts_numbers_and_scalar_tensors(temperature):
  value, grad = _value_and_grad("gumbel_softmax", objective, LOGITS,
                                temperature=temperature)
  reference = _value_and_grad("gumbel_softmax", objective, LOGITS,
                              temperature=0.7)
  np.testing.assert_allclose(value, reference[0], rtol=1e-6)
  np.testing.assert_allclose(grad, reference[1], rtol=1e-5)


@pytest.mark.parametrize("option,value,error,message", [
    ("temperature", 0.0, ValueError, "positive"),
    ("temperature", -1, ValueError, "positive"),
    ("temperature", float("inf"), ValueError, "finite"),
    ("temperature", True, TypeError, "positive number"),
    ("temperature", "1.0", TypeError, "positive number"),
    ("temperature", None, TypeError, "positive number"),
    ("temperature", tf.constant([1.0, 2.0]), TypeError, "scalar floating"),
    ("temperature", tf.constant(1), TypeError, "scalar floating"),
    ("num_rao_samples", 0, ValueError, "positive int"),
    ("num_rao_samples", 2.0, TypeError, "positive Python int"),
    ("num_rao_samples", True, TypeError, "positive Python int"),
])
def test_invalid_options_rejected(option, value, error, message):
  with pytest.raises(error, match=rf"`{option}` of estimator 'gumbel_rao'.*"
                     rf"{message}"):
    bernoulli.estimate(objective, LOGITS, "gumbel_rao", **{option: value})


def test_straight_through_takes_no_options():
  with pytest.raises(TypeError, match="'straight_through' takes no options"):
    bernoulli.estimate(objective, LOGITS, "straight_through", temperature=1.0)
