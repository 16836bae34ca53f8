"""REBAR, RELAX, double CV and RODEO: unbiased with any control-variate
state, trained state lowers the variance, determinism, extreme logits, Keras
layer state."""

import numpy as np
import pytest
import tensorflow as tf
import keras

import tf_discrete
from tests import support
from tf_discrete import bernoulli
from tf_discrete import diagnostics
from tf_discrete import examples
from tf_discrete import layers

PROBLEM = diagnostics.BERNOULLI_PROBLEM
LOGITS = PROBLEM.logits
objective = PROBLEM.objective
# The relaxation-based estimators (one hard sample and its relaxations).
NAMES = ["rebar", "relax"]
# K independent samples, control variates from f and its sample gradient.
SAMPLE_GRADIENT = ["double_cv", "rodeo"]
ALL = NAMES + SAMPLE_GRADIENT
NUM_RUNS = 40000
TRAIN_STEPS = 300


def _train(name, num_samples=None, steps=TRAIN_STEPS, batch=500):
  """A fresh state trained with Adam on the variance gradient that
  ``tape.gradient(loss, state variables)`` gives."""
  state = bernoulli.get(name).make_state([5])
  optimizer = keras.optimizers.Adam(1e-2)
  logits = tf.broadcast_to(LOGITS, [batch, 5])
  variables = list(state.trainable_variables)

  @tf.function(jit_compile=True)
  def step(i):
    with tf.GradientTape() as tape:
      value = bernoulli.estimate(objective, logits, name,
                                 num_samples=num_samples,
                                 seed=tf.stack([i, 123]),
                                 control_variate=state)
      loss = tf.reduce_sum(value)
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

  for i in range(steps):
    step(tf.constant(i))
  return state


# (estimator, num_samples): every estimator at its default cost, RODEO also
# in its K >= 3 form.
TRAINED = [(n, None) for n in ALL] + [("rodeo", 3)]


@pytest.fixture(scope="module", params=TRAINED,
                ids=[f"{n}-{k}" for n, k in TRAINED])
def trained(request):
  name, num_samples = request.param
  return name, num_samples, _train(name, num_samples)


def _stats(name, seed, state=None, logits=LOGITS, num_samples=None):
  options = {} if state is None else {"control_variate": state}
  return diagnostics.estimator_stats(objective, logits, name,
                                     num_runs=NUM_RUNS, seed=seed,
                                     num_samples=num_samples, **options)


def _arbitrary_state(name):
  """A state far from the initial one (the control variates active)."""
  est = bernoulli.get(name)
  state = {n: tf.constant(v) for n, v in est.state_spec([5]).items()}
  rng = np.random.RandomState(7)
  if name == "rebar":
    state.update(eta=tf.constant(0.3), log_temperature=tf.constant(1.0))
  elif name == "double_cv":
    state.update(alpha=tf.constant(0.8))
  elif name == "rodeo":
    state.update(alpha=tf.constant(1.5), beta=tf.constant(-2.0),
                 hidden_bias=tf.constant(rng.randn(100), tf.float32),
                 output_kernel=state["output_kernel"] * 3.0,
                 output_bias=tf.constant([0.3, -0.4]))
  return state


@pytest.mark.parametrize("name", ALL)
def test_declared_facts(name):
  est = bernoulli.get(name)
  facts = est.facts
  assert facts.estimates is tf_discrete.Estimates.MEAN
  assert facts.unbiased and facts.needs_objective_gradient
  assert facts.trainable_state
  cost = 3 if name in NAMES else 2
  assert facts.cost.default_for([5]) == cost and facts.cost.minimum == cost
  assert facts.option_names == ("control_variate",)
  module = est.make_state([5])
  for key, value in est.state_spec([5]).items():
    np.testing.assert_array_equal(getattr(module, key).numpy(), value)
  assert len(module.trainable_variables) == len(est.state_spec([5]))


def _objective_inputs(*runs):
  """What the objective receives, one call per ``(estimator,
  num_samples)`` run, all at seed 1."""
  calls = []

  def fn(b):
    calls.append(b)
    return objective(b)

  logits = tf.constant(np.random.RandomState(0).randn(4, 5), tf.float32)
  for name, num_samples in runs:
    bernoulli.estimate(fn, logits, name, num_samples=num_samples, seed=1)
  return calls


@pytest.mark.parametrize("name", NAMES)
def test_one_batched_call_hard_then_relaxed(name):
  calls = _objective_inputs((name, None), (name, 5))
  assert [c.shape for c in calls] == [(3, 4, 5), (5, 4, 5)]
  hard, relaxed = calls[0][0].numpy(), calls[0][1:].numpy()
  assert set(np.unique(hard)) <= {0.0, 1.0}
  assert np.all((relaxed > 0) & (relaxed < 1))
  # z~ is drawn given b: each relaxation lies on the side of its sample.
  np.testing.assert_array_equal(relaxed > 0.5, np.broadcast_to(hard > 0.5,
                                                               relaxed.shape))
  np.testing.assert_array_equal(calls[1][0], hard)  # Same seed, same b.


@pytest.mark.parametrize("name", SAMPLE_GRADIENT)
def test_one_batched_call_on_rloos_samples(name):
  calls = _objective_inputs((name, None), (name, 3), ("rloo", 3))
  assert [c.shape for c in calls] == [(2, 4, 5), (3, 4, 5), (3, 4, 5)]
  assert set(np.unique(calls[1])) <= {0.0, 1.0}
  np.testing.assert_array_equal(calls[1], calls[2])


@pytest.mark.parametrize("name,num_samples", [
    (n, k) for n in NAMES for k in (None, 5)] + [
        (n, k) for n in SAMPLE_GRADIENT for k in (None, 3)])
def test_unbiased_untrained(name, num_samples):
  stats = diagnostics.estimator_stats(objective, LOGITS, name,
                                      num_runs=NUM_RUNS, seed=5,
                                      num_samples=num_samples)
  assert np.all(np.abs(stats.grad_z) < 4), (stats.grad_z, stats.grad_mean,
                                            stats.exact_grad)
  assert np.all(np.abs(stats.value_z) < 4), stats.value_z


@pytest.mark.parametrize("name,num_samples", [
    ("rebar", None), ("double_cv", 2), ("double_cv", 3), ("rodeo", 2),
    ("rodeo", 3)])
def test_unbiased_with_an_arbitrary_state(name, num_samples):
  """Unbiased for every state, not only the initial one."""
  stats = _stats(name, 6, _arbitrary_state(name), num_samples=num_samples)
  assert np.all(np.abs(stats.grad_z) < 4), (stats.grad_z, stats.grad_mean,
                                            stats.exact_grad)


@pytest.mark.parametrize("name", SAMPLE_GRADIENT)
def test_untrained_state_is_rloo(name):
  """Initial coefficients 0: the same samples and gradient as RLOO."""
  logits = tf.constant(np.random.RandomState(2).randn(6, 5), tf.float32)

  def grad(estimator):
    with tf.GradientTape() as tape:
      tape.watch(logits)
      value = bernoulli.estimate(objective, logits, estimator, num_samples=3,
                                 seed=9)
    return value.numpy(), tape.gradient(value, logits).numpy()

  for ours, rloo in zip(grad(name), grad("rloo")):
    np.testing.assert_allclose(ours, rloo, rtol=1e-6, atol=1e-6)


def test_trained_state_is_unbiased_and_lowers_the_variance(trained):
  name, num_samples, state = trained
  untrained = _stats(name, 8, num_samples=num_samples)
  after = _stats(name, 8, state, num_samples=num_samples)
  assert np.all(np.abs(after.grad_z) < 4), (after.grad_z, after.grad_mean,
                                            after.exact_grad)
  assert np.all(np.abs(after.value_z) < 4), after.value_z
  # RODEO and double CV start as RLOO; their trained variance is far lower
  # (about 0.11x and 0.36x RLOO's at K = 2 on this problem).
  factor = {"rodeo": 0.3, "double_cv": 0.6}.get(name, 0.85)
  assert after.mean_grad_var < factor * untrained.mean_grad_var, (
      after.mean_grad_var, untrained.mean_grad_var)
  if name == "rodeo":  # Below RLOO at the same number of evaluations.
    rloo = _stats("rloo", 8, num_samples=num_samples or 2)
    assert after.mean_grad_var < 0.3 * rloo.mean_grad_var, (
        after.mean_grad_var, rloo.mean_grad_var)


def test_state_gradient_is_the_variance_gradient():
  """d/dphi sum (u g)^2: scales with the upstream squared, zero without
  upstream, and matches differentiating the squared gradient directly."""
  state = bernoulli.get("rebar").make_state([5])
  variables = list(state.trainable_variables)
  logits = tf.broadcast_to(LOGITS, [64, 5])

  def state_grad(scale):
    with tf.GradientTape() as tape:
      value = bernoulli.estimate(objective, logits, "rebar", seed=3,
                                 control_variate=state)
      loss = scale * tf.reduce_sum(value)
    return [g.numpy() for g in tape.gradient(loss, variables)]

  one, three = state_grad(1.0), state_grad(3.0)
  for a, b in zip(one, three):
    np.testing.assert_allclose(b, 9.0 * a, rtol=1e-4, atol=1e-6)
  assert all(np.all(g == 0) for g in state_grad(0.0))
  assert any(np.any(g != 0) for g in one)

  # Central finite differences of sum(g^2) in log_temperature and eta.
  def squared_gradient(eta, log_tau):
    with tf.GradientTape() as tape:
      tape.watch(logits)
      value = bernoulli.estimate(
          objective, logits, "rebar", seed=3,
          control_variate={"eta": tf.constant(eta),
                           "log_temperature": tf.constant(log_tau)})
    return float(tf.reduce_sum(tf.square(tape.gradient(value, logits))))

  eta, log_tau = float(state.eta.numpy()), float(state.log_temperature.numpy())
  h = 1e-2
  d_eta = (squared_gradient(eta + h, log_tau)
           - squared_gradient(eta - h, log_tau)) / (2 * h)
  d_tau = (squared_gradient(eta, log_tau + h)
           - squared_gradient(eta, log_tau - h)) / (2 * h)
  by_name = dict(zip([v.name.split(":")[0] for v in variables], one))
  np.testing.assert_allclose(by_name["eta"], d_eta, rtol=2e-2)
  np.testing.assert_allclose(by_name["log_temperature"], d_tau, rtol=2e-2)


@pytest.mark.parametrize("name", SAMPLE_GRADIENT)
def test_state_gradient_of_the_sample_gradient_estimators(name):
  """The coefficients enter g linearly, so sum(g^2) is quadratic in them
  and central differences give its derivative up to rounding; the network
  of RODEO gets a gradient once they are non-zero."""
  logits = tf.broadcast_to(LOGITS, [64, 5])
  base = _arbitrary_state(name)

  def estimate(state):
    return bernoulli.estimate(objective, logits, name, num_samples=3, seed=3,
                              control_variate=state)

  def squared_gradient(state):
    with tf.GradientTape() as tape:
      tape.watch(logits)
      value = estimate(state)
    return float(tf.reduce_sum(tf.square(tape.gradient(value, logits))))

  variables = {n: tf.Variable(v) for n, v in base.items()}
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(estimate(variables))
  grads = dict(zip(variables, tape.gradient(loss, list(variables.values()))))
  h = 1e-2
  for coefficient in ("alpha", "beta") if name == "rodeo" else ("alpha",):
    up = dict(base, **{coefficient: base[coefficient] + h})
    down = dict(base, **{coefficient: base[coefficient] - h})
    np.testing.assert_allclose(
        grads[coefficient],
        (squared_gradient(up) - squared_gradient(down)) / (2 * h), rtol=1e-2)
  assert all(np.all(np.isfinite(g.numpy())) for g in grads.values())
  if name == "rodeo":
    assert np.any(grads["output_kernel"].numpy() != 0)
    assert np.any(grads["hidden_kernel"].numpy() != 0)


def _active_state(name):
  """Fresh variables holding :func:`_arbitrary_state`."""
  state = bernoulli.get(name).make_state([5])
  for key, value in _arbitrary_state(name).items():
    getattr(state, key).assign(value)
  return state


DETERMINISM = [(n, None) for n in ALL] + [(n, 3) for n in SAMPLE_GRADIENT]


@pytest.mark.parametrize("name,num_samples", DETERMINISM)
def test_same_seed_same_result_eager_function_xla(name, num_samples):
  state = _active_state(name)
  variables = list(state.trainable_variables)
  logits = tf.constant(np.random.RandomState(1).randn(3, 5), tf.float32)

  def run(logits, seed):
    with tf.GradientTape() as tape:
      tape.watch(logits)
      value = bernoulli.estimate(objective, logits, name, seed=seed,
                                 num_samples=num_samples,
                                 control_variate=state)
      total = tf.reduce_sum(value)
    grads = tape.gradient(total, [logits] + variables)
    return [value] + grads

  seed = tf.constant([4, 2])
  eager = run(logits, seed)
  graph = tf.function(run)(logits, seed)
  xla = tf.function(run, jit_compile=True)(logits, seed)
  for other in (graph, xla):
    for a, b in zip(eager, other):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  different = run(logits, tf.constant([4, 3]))
  assert not np.allclose(eager[1], different[1])


@pytest.mark.parametrize("name", SAMPLE_GRADIENT)
def test_active_control_variate_same_in_eager_graph_xla(name):
  """The shared determinism check, with the control variates switched on
  (constant state) and K = 3."""
  state = _arbitrary_state(name)
  support.assert_same_in_eager_graph_xla(
      lambda logits, seed: bernoulli.estimate(
          objective, logits, name, num_samples=3, seed=seed,
          control_variate=state),
      tf.constant(np.random.RandomState(4).randn(4, 5), tf.float32),
      tf.constant([1, 2]), tf.constant([1, 3]), grad_rtol=1e-4)


@pytest.mark.parametrize("name,num_samples", DETERMINISM)
def test_extreme_logits_are_finite_with_state_gradient(name, num_samples):
  logits = tf.constant([[1e4, -1e4, 3e3, -2e3, 0.0], [0.3, -1e4, 2.0, 1e4,
                                                      -20.0]])
  state = _active_state(name)
  variables = list(state.trainable_variables)

  def elbo_like(b):
    log_q = -tf.reduce_sum(tf.nn.softplus(-(2 * b - 1) * logits), -1)
    return objective(b) - log_q

  with tf.GradientTape() as tape:
    tape.watch(logits)
    value = bernoulli.estimate(elbo_like, logits, name, seed=2,
                               num_samples=num_samples,
                               control_variate=state)
  grads = tape.gradient(value, [logits] + variables)
  assert np.all(np.isfinite(value.numpy()))
  for g in grads:
    assert np.all(np.isfinite(g.numpy()))


@pytest.mark.parametrize("name", ALL)
def test_non_differentiable_objective_is_refused(name):
  with pytest.raises(ValueError, match=f"'{name}'.*differentiable"):
    bernoulli.estimate(lambda b: tf.reduce_sum(tf.round(b), -1),
                       tf.zeros([2, 3]), name, seed=0)


def test_bad_state_is_refused():
  with pytest.raises(ValueError, match="`control_variate`.*log_temperature"):
    bernoulli.estimate(objective, LOGITS, "rebar", seed=0,
                       control_variate={"eta": tf.constant(1.0)})
  with pytest.raises(ValueError, match="`hidden_kernel` must be.*shape"):
    bernoulli.estimate(objective, LOGITS, "relax", seed=0,
                       control_variate=bernoulli.get("relax").make_state([3]))
  with pytest.raises(ValueError, match="`num_samples`"):
    bernoulli.estimate(objective, LOGITS, "rebar", num_samples=2, seed=0)
  state = dict(_arbitrary_state("rodeo"), beta=tf.zeros([2]))
  with pytest.raises(ValueError, match="`beta` must be.*shape \\[\\]"):
    bernoulli.estimate(objective, LOGITS, "rodeo", seed=0,
                       control_variate=state)
  with pytest.raises(ValueError, match="`control_variate`.*missing.*beta"):
    bernoulli.estimate(objective, LOGITS, "rodeo", seed=0,
                       control_variate={"alpha": tf.constant(1.0)})
  for name in SAMPLE_GRADIENT:
    with pytest.raises(ValueError, match="`num_samples`.*at least 2"):
      bernoulli.estimate(objective, LOGITS, name, num_samples=1, seed=0)


# --------------------------------------------------------------------------
# Keras layers.


def _data(n=256, dim=16, seed=0):
  rng = np.random.RandomState(seed)
  prototypes = rng.rand(2, dim) < 0.5
  data = prototypes[rng.randint(2, size=n)]
  return np.logical_xor(data, rng.rand(n, dim) < 0.05).astype(np.float32)


@pytest.mark.parametrize("name", NAMES)
def test_layer_builds_state_weights_and_fit_trains_them(name):
  model = examples.functional_bernoulli_vae(16, 4, name, seed=0)
  latent = model.get_layer("latent")
  spec = bernoulli.get(name).state_spec([4])
  state = latent.control_variate
  assert set(state) == set(spec)
  assert all(any(v is w for w in model.trainable_variables)
             for v in state.values())
  before = {k: v.numpy().copy() for k, v in state.items()}
  model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
  model.fit(_data(), batch_size=64, epochs=2, verbose=0)
  assert not np.allclose(before["log_temperature"],
                         state["log_temperature"].numpy())
  assert np.all(np.isfinite(model.predict(_data()[:8], verbose=0)))


@pytest.mark.parametrize("name", ["relax"] + SAMPLE_GRADIENT)
def test_layer_round_trip_keeps_trained_control_weights(name, tmp_path):
  model = examples.functional_bernoulli_vae(16, 4, name, seed=0)
  model.compile(optimizer=keras.optimizers.Adam(1e-2))
  model.fit(_data(), batch_size=64, epochs=1, verbose=0)
  state = model.get_layer("latent").control_variate
  spec = bernoulli.get(name).state_spec([4])
  assert set(state) == set(spec)
  assert any(not np.allclose(state[k].numpy(), v) for k, v in spec.items())
  path = str(tmp_path / "vae.keras")
  model.save(path)
  restored = keras.saving.load_model(path)
  latent = restored.get_layer("latent")
  assert latent.estimator == name
  assert "control_variate" not in latent.get_config()["estimator_options"]
  for key, value in latent.control_variate.items():
    np.testing.assert_array_equal(value.numpy(), state[key].numpy())
  x = _data()[:8]
  np.testing.assert_allclose(restored.predict(x, verbose=0),
                             model.predict(x, verbose=0), rtol=1e-5)


def test_layer_config_round_trip_then_weights():
  """Config round trip of the layer alone, then its weights."""
  layer = layers.BernoulliLatent("rebar", seed=3)
  layer(tf.zeros([2, 5]), objective=objective)
  layer.control_variate["eta"].assign(0.25)
  clone = layers.BernoulliLatent.from_config(layer.get_config())
  clone.build((2, 5))
  clone.set_weights(layer.get_weights())
  assert float(clone.control_variate["eta"].numpy()) == 0.25


def test_layer_refuses_state_in_options_and_non_differentiable_objective():
  with pytest.raises(ValueError, match="owns the control-variate state"):
    layers.BernoulliLatent("rebar", estimator_options={
        "control_variate": {"eta": tf.constant(1.0),
                            "log_temperature": tf.constant(0.0)}})
  layer = layers.BernoulliLatent("relax", seed=0)
  with pytest.raises(ValueError, match="'relax'.*differentiable"):
    layer(tf.zeros([2, 3]), objective=lambda b: tf.reduce_sum(
        tf.round(b), -1))
