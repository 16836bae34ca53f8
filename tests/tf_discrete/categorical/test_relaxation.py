"""Categorical relaxation and straight-through estimators: what theory
guarantees (exactness, unbiasedness where it holds, limits, Rao-Blackwell),
and the contract (seeds, numerics, errors, a variable temperature)."""

import numpy as np
import pytest
import tensorflow as tf

from tests import support
import tf_discrete
from tf_discrete import categorical
from tf_discrete import diagnostics
from tf_discrete.categorical import _common

RELAXATIONS = ["gumbel_softmax", "straight_through", "st_gumbel_softmax",
               "gumbel_rao", "reinmax"]
WITH_TEMPERATURE = [n for n in RELAXATIONS if n != "straight_through"]
HARD_FORWARD = [n for n in RELAXATIONS if n != "gumbel_softmax"]

PROBLEM = diagnostics.categorical_problem(4)
LOGITS = PROBLEM.logits
objective = PROBLEM.objective
NUM_RUNS = 40000

_A = np.random.RandomState(0).randn(2, 4).astype(np.float32)


def linear(z):
  return tf.reduce_sum(z * _A[:, :z.shape[-1]], [-2, -1])


def _value_and_grad(name, fn, logits, seed=1, num_samples=None, **options):
  logits = tf.convert_to_tensor(logits)
  with tf.GradientTape() as tape:
    tape.watch(logits)
    value = categorical.estimate(fn, logits, name, num_samples=num_samples,
                                 seed=seed, **options)
    total = tf.reduce_sum(value)
  return value, tape.gradient(total, logits)


def _stats(fn, logits, name, **kwargs):
  return diagnostics.estimator_stats(fn, logits, name, family="categorical",
                                     **kwargs)


# ---------------------------------------------------------------------------
# Facts.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", RELAXATIONS)
def test_declared_facts(name):
  facts = categorical.get(name).facts
  assert facts.estimates is tf_discrete.Estimates.MEAN
  assert facts.cost.default_for([2, 4]) == 1 and not facts.cost.fixed
  assert facts.unbiased is False and facts.needs_objective_gradient is True
  assert not facts.trainable_state
  expected = {"straight_through": (), "gumbel_rao": ("temperature",
                                                     "num_rao_samples")}
  assert facts.option_names == expected.get(name, ("temperature",))
  doc = type(categorical.get(name)).__doc__
  assert "Cost:" in doc and "biased" in doc.lower() and "math::" in doc


# ---------------------------------------------------------------------------
# What theory guarantees.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("c", [2, 3, 4])
def test_straight_through_exact_for_linear_objective(c):
  logits = tf.constant(np.random.RandomState(c).randn(6, 2, c) * 3,
                       tf.float32)
  _, exact = diagnostics.exact_value_and_gradient(linear, logits,
                                                  "categorical")
  for seed in (1, 2):
    _, grad = _value_and_grad("straight_through", linear, logits, seed=seed,
                              num_samples=3)
    np.testing.assert_allclose(grad, exact, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("c,num_samples", [(2, None), (4, None), (4, 3)])
def test_reinmax_unbiased_for_linear_objective(c, num_samples):
  """E[J((D + softmax(theta)) / 2)] = 3/4 J(softmax(theta)) at
  temperature 1."""
  logits = np.array([[0.5, -1.0, 1.0, 0.2], [-0.4, 1.5, 0.0, 0.3]],
                    np.float32)[:, :c]
  stats = _stats(linear, logits, "reinmax", num_runs=NUM_RUNS, seed=3,
                 num_samples=num_samples, temperature=1.0)
  assert np.all(np.abs(stats.grad_z) < 4), (stats.grad_z, stats.grad_mean,
                                            stats.exact_grad)
  assert stats.mean_grad_var > 0  # Exact in mean only.


def test_reinmax_biased_for_linear_objective_at_other_temperature():
  logits = np.array([[0.5, -1.0, 1.0, 0.2], [-0.4, 1.5, 0.0, 0.3]],
                    np.float32)
  stats = _stats(linear, logits, "reinmax", num_runs=NUM_RUNS, seed=3,
                 temperature=0.3)
  assert np.max(np.abs(stats.grad_z)) > 8


def test_gumbel_softmax_value_approaches_expectation_as_temperature_drops():
  biases = []
  for temperature in (2.0, 0.5, 0.1):
    stats = _stats(objective, LOGITS, "gumbel_softmax", num_runs=NUM_RUNS,
                   seed=5, temperature=temperature)
    biases.append(float(np.abs(stats.value_mean - stats.exact_value)))
  assert biases[0] > biases[1] > biases[2], biases
  assert biases[2] < 0.1 * biases[0], biases


def test_gumbel_softmax_gradient_bias_drops_with_temperature():
  bias = [_stats(objective, LOGITS, "gumbel_softmax", num_runs=NUM_RUNS,
                 seed=5, temperature=t).relative_bias for t in (2.0, 0.5, 0.1)]
  assert bias[0] > bias[1] > bias[2], bias


def test_gumbel_rao_with_one_draw_is_st_gumbel_softmax():
  logits = tf.constant(np.random.RandomState(3).randn(50, 2, 4) * 2,
                       tf.float32)
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
  replicated = tf.broadcast_to(tf.constant(LOGITS), [NUM_RUNS, 2, 4])
  _, st = _value_and_grad("st_gumbel_softmax", objective, replicated, seed=9,
                          temperature=temperature)
  _, rao = _value_and_grad("gumbel_rao", objective, replicated, seed=9,
                           temperature=temperature, num_rao_samples=10)
  st, rao = st.numpy().astype(np.float64), rao.numpy().astype(np.float64)
  diff = rao - st
  z = diff.mean(0) / np.maximum(diff.std(0) / np.sqrt(NUM_RUNS), 1e-30)
  assert np.all(np.abs(z) < 4), z
  assert np.all(rao.var(0) <= st.var(0) + 1e-12), (rao.var(0), st.var(0))
  assert rao.var(0).mean() < 0.8 * st.var(0).mean()


def test_conditional_gumbels_have_the_conditional_law():
  """Top-down draws given the argmax against the forward draws."""
  theta = tf.constant([[1.0, -0.5, 0.3, 0.0], [3.0, -2.0, 0.0, 1.0]],
                      tf.float64)
  n = 200000
  log_e = _common.log_exponential([n, 2, 4], tf.constant([1, 2]), tf.float64)
  index = _common.exponential_race(log_e, theta)
  forward = theta - log_e
  fresh = _common.log_exponential([1, n, 2, 4], tf.constant([3, 4]),
                                  tf.float64)
  conditional = _common.race_given_winner(fresh, theta, index)[0]
  np.testing.assert_array_equal(tf.argmax(conditional, -1, tf.int32), index)
  winner = tf.one_hot(index, 4, dtype=tf.float64)[..., tf.newaxis]
  for fn in (lambda g: tf.nn.softmax(g), lambda g: tf.nn.softmax(g / 0.3),
             lambda g: tf.tanh((g - theta) / 4.0)):
    # Per winner k and category c: E[1{index = k} fn(.)_c] must agree.
    diff = (winner * (fn(conditional) - fn(forward))[..., tf.newaxis, :])
    diff = tf.reshape(diff, [n, -1]).numpy()
    scale = diff.std(0) / np.sqrt(n)
    z = diff.mean(0) / np.maximum(scale, 1e-30)
    assert np.all(np.abs(z) < 4.5), z


def test_conditional_gumbels_finite_for_extreme_logits():
  theta = tf.constant([[1e4, -1e4, 0.0, 3e3], [-2e3, 1e4, -1e4, 0.0]])
  index = tf.constant([[0, 1], [2, 3], [1, 0]], tf.int32)  # Also unlikely.
  log_e = _common.log_exponential([5, 3, 2, 4], tf.constant([0, 1]),
                                  tf.float32)
  g = _common.race_given_winner(log_e, theta, index).numpy()
  assert np.all(np.isfinite(g))
  np.testing.assert_array_equal(np.argmax(g, -1),
                                np.broadcast_to(index, [5, 3, 2]))


# ---------------------------------------------------------------------------
# The objective sees differentiable samples; decoders keep their gradient.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", RELAXATIONS)
def test_one_batched_call_with_contract_shapes(name):
  logits = tf.constant(np.random.RandomState(0).randn(5, 3, 2, 4) * 2,
                       tf.float32)
  calls = []

  def fn(z):
    calls.append(z)
    return objective(z)

  value = categorical.estimate(fn, logits, name, num_samples=6, seed=0)
  assert value.shape == (5, 3)
  assert len(calls) == 1
  samples = calls[0].numpy()
  assert samples.shape == (6, 5, 3, 2, 4) and calls[0].dtype == tf.float32
  assert samples.min() >= 0 and samples.max() <= 1
  np.testing.assert_allclose(samples.sum(-1), 1.0, rtol=1e-6)
  if name in HARD_FORWARD:
    assert set(np.unique(samples)) <= {0.0, 1.0}
    np.testing.assert_allclose(value, tf.reduce_mean(objective(samples), 0),
                               rtol=1e-6)
  else:
    assert 0 < np.mean((samples > 0) & (samples < 1))


@pytest.mark.parametrize("name", HARD_FORWARD)
def test_hard_samples_are_those_of_reinforce_and_value_unbiased(name):
  logits = tf.constant(np.random.RandomState(0).randn(7, 2, 4), tf.float32)
  seen = {}
  for estimator in ("reinforce", name):
    categorical.estimate(lambda z, e=estimator: seen.setdefault(e, z)[..., 0,
                                                                     0],
                         logits, estimator, num_samples=3, seed=5)
  np.testing.assert_array_equal(seen["reinforce"], seen[name])
  stats = _stats(objective, LOGITS, name, num_runs=20000, seed=2)
  assert np.all(np.abs(stats.value_z) < 4), stats.value_z


@pytest.mark.parametrize("name", RELAXATIONS)
def test_decoder_variables_get_the_pathwise_gradient(name):
  embedding = tf.Variable(
      np.random.RandomState(1).randn(4, 3).astype(np.float32))
  logits = tf.constant(np.random.RandomState(2).randn(2, 2, 4), tf.float32)
  seen = []

  def fn(z):
    seen.append(z)
    return tf.reduce_sum(tf.sin(tf.matmul(z, embedding)), [-2, -1])

  with tf.GradientTape() as tape:
    tape.watch(logits)
    value = categorical.estimate(fn, logits, name, num_samples=3, seed=3)
    total = tf.reduce_sum(value)
  d_embedding, d_logits = tape.gradient(total, [embedding, logits])
  with tf.GradientTape() as tape:
    z = tf.constant(seen[0])
    direct = tf.reduce_sum(fn(z)) / 3.0
  np.testing.assert_allclose(d_embedding, tape.gradient(direct, embedding),
                             rtol=1e-5, atol=1e-7)
  assert np.all(np.isfinite(d_logits)) and np.any(d_logits.numpy() != 0)


@pytest.mark.parametrize("name", RELAXATIONS)
def test_direct_logits_dependence_adds_to_the_surrogate(name):
  logits = tf.constant([[[0.3, -0.4, 1.0], [0.0, 2.0, -1.0]]])
  grads = []
  for direct in (False, True):
    with tf.GradientTape() as tape:
      tape.watch(logits)
      fn = lambda z, d=direct: (linear(z) + (
          tf.reduce_sum(logits, [-2, -1]) if d else 0.0))
      value = categorical.estimate(fn, logits, name, seed=5)
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
  logits = tf.constant(np.random.RandomState(1).randn(3, 2, 4) * 2,
                       tf.float32)
  logits = tf.concat([logits, tf.zeros([1, 2, 4])], 0)  # Ties.
  seed = tf.constant([4, 2])

  support.assert_same_in_eager_graph_xla(
      lambda logits, seed: categorical.estimate(
          objective, logits, name,
          num_samples=2, seed=seed, **options),
      logits, seed, tf.constant([4, 3]), grad_rtol=1e-4)


def test_unknown_batch_size_in_graph():
  spec = tf.TensorSpec([None, 2, 4], tf.float32)
  for name in RELAXATIONS:
    fn = tf.function(lambda x, n=name: _value_and_grad(n, objective, x),
                     input_signature=[spec])
    value, grad = fn(tf.zeros([3, 2, 4]))
    assert value.shape == (3,) and grad.shape == (3, 2, 4)


EXTREME = np.array([[[1e4, -1e4, 0.0, 3e3], [-2e3, 1e4, -1e4, 0.0]],
                    [[-1e4, -1e4, -1e4, -1e4], [1e4, 1e4, -1e4, 5.0]]],
                   np.float32)


@pytest.mark.parametrize("name", RELAXATIONS)
@pytest.mark.parametrize("temperature", [None, 0.05])
def test_extreme_logits_are_finite(name, temperature):
  logits = tf.constant(EXTREME)
  options = {} if temperature is None or name == "straight_through" else {
      "temperature": temperature}

  def elbo_like(z):
    log_q = tf.reduce_sum(z * tf.nn.log_softmax(logits), [-2, -1])
    return objective(z) - log_q

  for jit in (False, True):
    value, grad = tf.function(
        lambda x: _value_and_grad(name, elbo_like, x, seed=3, num_samples=3,
                                  **options), jit_compile=jit)(logits)
    assert np.all(np.isfinite(value.numpy())), value
    assert np.all(np.isfinite(grad.numpy())), grad


@pytest.mark.parametrize("name", RELAXATIONS)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_logits_give_non_finite_gradient(name, bad):
  logits = tf.constant([[[0.5, bad, 0.0], [0.0, 1.0, 2.0]],
                        [[0.5, 0.2, 0.0], [0.0, 1.0, 2.0]]], tf.float32)
  value, grad = _value_and_grad(name, linear, logits)
  assert np.isnan(value.numpy()[0]) and np.isfinite(value.numpy()[1])
  assert np.all(np.isnan(grad.numpy()[0]))
  assert np.all(np.isfinite(grad.numpy()[1]))


@pytest.mark.parametrize("name", RELAXATIONS)
@pytest.mark.parametrize("dtype", [tf.float64, tf.float16])
def test_dtypes(name, dtype):
  logits = tf.constant(np.random.RandomState(0).randn(4, 2, 4), dtype)
  seen = []

  def fn(z):
    seen.append(z.dtype)
    return tf.reduce_sum(z * tf.constant(_A, dtype), [-2, -1])

  value, grad = _value_and_grad(name, fn, logits)
  assert seen == [dtype] and value.dtype == dtype and grad.dtype == dtype
  assert np.all(np.isfinite(grad.numpy()))


# ---------------------------------------------------------------------------
# A non-differentiable objective is refused clearly.
# ---------------------------------------------------------------------------

_TABLE = tf.constant([0.5, 2.0, -1.0, 3.0])

NON_DIFFERENTIABLE = {
    "argmax_index": lambda z: tf.reduce_sum(
        tf.gather(_TABLE, tf.argmax(z, -1)), -1),
    "cast": lambda z: tf.cast(tf.reduce_sum(tf.cast(z, tf.int32), [-2, -1]),
                              tf.float32),
    "stop_gradient": lambda z: linear(tf.stop_gradient(z)),
}


@pytest.mark.parametrize("name", RELAXATIONS)
@pytest.mark.parametrize("kind", sorted(NON_DIFFERENTIABLE))
def test_non_differentiable_objective_is_refused(name, kind):
  message = (rf"Estimator '{name}' needs the gradient of `objective` with "
             rf"respect to its samples.*not differentiable")
  with pytest.raises(ValueError, match=message):
    categorical.estimate(NON_DIFFERENTIABLE[kind], LOGITS, name, seed=0)
  with pytest.raises(ValueError, match=message):  # Also while tracing.
    tf.function(lambda x: categorical.estimate(
        NON_DIFFERENTIABLE[kind], x, name, seed=0),
                jit_compile=True)(tf.constant(LOGITS))


def test_other_estimators_accept_non_differentiable_objectives():
  for name, est in categorical.REGISTRY.items():
    if not est.facts.needs_objective_gradient:
      categorical.estimate(NON_DIFFERENTIABLE["argmax_index"], LOGITS, name,
                           seed=0)


# ---------------------------------------------------------------------------
# Options: a temperature variable, validation.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", WITH_TEMPERATURE)
@pytest.mark.parametrize("jit", [False, True])
def test_temperature_variable_is_read_at_every_call(name, jit):
  temperature = tf.Variable(1.0)
  logits = tf.constant(np.random.RandomState(4).randn(8, 2, 4), tf.float32)
  traces = []

  @tf.function(jit_compile=jit)
  def run(logits):
    traces.append(1)
    with tf.GradientTape() as tape:
      tape.watch(logits)
      value = categorical.estimate(objective, logits, name, seed=[1, 2],
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


@pytest.mark.parametrize("option,value,error,message", [
    ("temperature", 0.0, ValueError, "positive"),
    ("temperature", -0.5, ValueError, "positive"),
    ("temperature", False, TypeError, "positive number"),
    ("temperature", tf.constant([[0.5]]), TypeError, "scalar floating"),
    ("num_rao_samples", -3, ValueError, "positive int"),
    ("num_rao_samples", "10", TypeError, "positive Python int"),
])
def test_invalid_options_rejected(option, value, error, message):
  with pytest.raises(error, match=rf"`{option}` of estimator 'gumbel_rao'.*"
                     rf"{message}"):
    categorical.estimate(objective, LOGITS, "gumbel_rao", **{option: value})


def test_straight_through_takes_no_options():
  with pytest.raises(TypeError, match="'straight_through' takes no options"):
    categorical.estimate(objective, LOGITS, "straight_through",
                         temperature=1.0)
