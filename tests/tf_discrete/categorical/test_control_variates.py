"""Categorical REBAR and RELAX: unbiased with any control-variate state,
trained state lowers the variance, the conditional draw's Jacobian,
determinism, extreme logits, Keras layer state."""

import numpy as np
import pytest
import tensorflow as tf
import keras

import tf_discrete
from tests import support
from tf_discrete import categorical
from tf_discrete import diagnostics
from tf_discrete import examples
from tf_discrete import layers
from tf_discrete.categorical import _common
from tf_discrete.categorical import control_variates

PROBLEM = diagnostics.categorical_problem(4)
LOGITS = PROBLEM.logits
EVENT = list(LOGITS.shape)  # [V, C] = [2, 4]
objective = PROBLEM.objective
NAMES = ["rebar", "relax"]
NUM_RUNS = 20000
TRAIN_STEPS = 300


def _train(name, steps=TRAIN_STEPS, batch=500):
  """A fresh state trained with Adam on the variance gradient that
  ``tape.gradient(loss, state variables)`` gives (all steps in one XLA
  program)."""
  state = categorical.get(name).make_state(EVENT)
  variables = list(state.trainable_variables)
  optimizer = keras.optimizers.Adam(1e-2)
  optimizer.build(variables)
  logits = tf.broadcast_to(LOGITS, [batch] + EVENT)

  @tf.function(jit_compile=True)
  def run():
    for i in tf.range(steps):
      with tf.GradientTape() as tape:
        loss = tf.reduce_sum(categorical.estimate(
            objective, logits, name, seed=tf.stack([i, 123]),
            control_variate=state))
      optimizer.apply_gradients(zip(tape.gradient(loss, variables),
                                    variables))

  run()
  return state


@pytest.fixture(scope="module", params=NAMES)
def trained(request):
  return request.param, _train(request.param)


def _stats(name, seed, state=None, logits=LOGITS, **kwargs):
  if state is not None:
    kwargs["control_variate"] = state
  return diagnostics.estimator_stats(objective, logits, name,
                                     family="categorical", num_runs=NUM_RUNS,
                                     seed=seed, **kwargs)


def _assert_unbiased(stats):
  assert np.all(np.abs(stats.grad_z) < 4), (stats.grad_z, stats.grad_mean,
                                            stats.exact_grad)
  assert np.all(np.abs(stats.value_z) < 4), stats.value_z


@pytest.mark.parametrize("name", NAMES)
def test_declared_facts(name):
  est = categorical.get(name)
  facts = est.facts
  assert (facts.estimates, facts.unbiased, facts.needs_objective_gradient,
          facts.trainable_state) == (tf_discrete.Estimates.MEAN, True, True,
                                     True)
  assert (facts.cost.default_for(EVENT), facts.cost.minimum) == (3, 3)
  assert facts.option_names == ("control_variate",) and facts.paper
  spec = est.state_spec(EVENT)
  module = est.make_state(EVENT)
  assert len(module.trainable_variables) == len(spec)
  for key, value in spec.items():
    np.testing.assert_array_equal(getattr(module, key).numpy(), value)
  if name == "relax":  # The network sees the V * C relaxed coordinates.
    assert spec["hidden_kernel"].shape == (8, 16)


@pytest.mark.parametrize("name", NAMES)
def test_one_batched_call_hard_then_relaxed(name):
  calls = []
  fn = lambda z: calls.append(z) or objective(z)
  logits = tf.constant(np.random.RandomState(0).randn(4, 2, 4) * 2,
                       tf.float32)
  categorical.estimate(fn, logits, name, seed=1)
  categorical.estimate(fn, logits, name, num_samples=5, seed=1)
  assert [c.shape for c in calls] == [(3, 4, 2, 4), (5, 4, 2, 4)]
  hard, relaxed = calls[1][0].numpy(), calls[1][1:].numpy()
  assert set(np.unique(hard)) <= {0.0, 1.0}
  np.testing.assert_array_equal(hard.sum(-1), 1.0)
  assert np.all(relaxed > 0)
  np.testing.assert_allclose(relaxed.sum(-1), 1.0, rtol=1e-5)
  # z and every z~ (drawn given b) have their maximum at b's category.
  np.testing.assert_array_equal(
      relaxed.argmax(-1), np.broadcast_to(hard.argmax(-1), relaxed.shape[:-1]))
  np.testing.assert_array_equal(calls[0][:2], calls[1][:2])  # Same seed.
  assert not np.array_equal(calls[1][2], calls[1][3])  # Fresh z~ draws.


def test_conditional_jacobian_matches_autodiff():
  rng = np.random.RandomState(0)
  theta = tf.constant(rng.randn(3, 2, 4) * 3, tf.float32)
  index = tf.constant(rng.randint(4, size=(1, 3, 2)), tf.int32)
  log_e = _common.log_exponential([5, 3, 2, 4], tf.constant([1, 2]),
                                  tf.float32)
  upstream = tf.constant(rng.randn(5, 3, 2, 4), tf.float32)
  with tf.GradientTape() as tape:
    tape.watch(theta)
    z_tilde = _common.race_given_winner(log_e, theta, index)
  expected = tape.gradient(z_tilde, theta, output_gradients=upstream)
  got = tf.reduce_sum(
      control_variates.conditional_vjp(z_tilde, theta, upstream), 0)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("num_samples", [None, 5])
def test_unbiased_untrained(name, num_samples):
  _assert_unbiased(_stats(name, 5, num_samples=num_samples))


@pytest.mark.parametrize("name", NAMES)
def test_unbiased_with_three_categories(name):
  logits = diagnostics.categorical_problem(3).logits
  _assert_unbiased(_stats(name, 9, logits=logits))


def _arbitrary_state(name):
  spec = categorical.get(name).state_spec(EVENT)
  rng = np.random.RandomState(3)
  state = {n: tf.constant(v + 0.5 * rng.randn(*v.shape), tf.float32)
           for n, v in spec.items()}
  state["eta"] = tf.constant(0.3)
  state["log_temperature"] = tf.constant(1.0)
  return state


@pytest.mark.parametrize("name", NAMES)
def test_unbiased_with_an_arbitrary_state(name):
  """Unbiased for every state, not only the initial one (RELAX: a network
  with non-zero output weights)."""
  _assert_unbiased(_stats(name, 6, _arbitrary_state(name)))


def test_trained_state_is_unbiased_and_lowers_the_variance(trained):
  name, state = trained
  untrained = _stats(name, 8)
  after = _stats(name, 8, state)
  _assert_unbiased(after)
  assert after.mean_grad_var < 0.6 * untrained.mean_grad_var, (
      after.mean_grad_var, untrained.mean_grad_var)


@pytest.mark.parametrize("name,checked", [
    ("rebar", ("eta", "log_temperature")),
    ("relax", ("eta", "log_temperature", "output_bias"))])
def test_state_gradient_is_the_variance_gradient(name, checked):
  """d/dphi sum (u g)^2: scales with the upstream squared, zero without
  upstream, and matches finite differences of the squared gradient."""
  state = categorical.get(name).make_state(EVENT)
  variables = list(state.trainable_variables)
  logits = tf.broadcast_to(LOGITS, [64] + EVENT)

  def state_grad(scale):
    with tf.GradientTape() as tape:
      value = categorical.estimate(objective, logits, name, seed=3,
                                   control_variate=state)
      loss = scale * tf.reduce_sum(value)
    return [g.numpy() for g in tape.gradient(loss, variables)]

  by_scale = {scale: state_grad(scale) for scale in (0.0, 1.0, 3.0)}
  one = by_scale[1.0]
  for zero, a, b in zip(by_scale[0.0], one, by_scale[3.0]):
    np.testing.assert_allclose(b, 9.0 * a, rtol=1e-4, atol=1e-6)
    assert np.all(zero == 0)

  values = {v.name.split(":")[0]: tf.constant(v.numpy()) for v in variables}
  by_name = dict(zip(values, one))
  # (RELAX's hidden layer gets none through its initial zero output kernel.)
  assert all(np.any(by_name[key] != 0) for key in checked)

  def squared_gradient(key, delta):
    shifted = dict(values, **{key: values[key] + delta})
    with tf.GradientTape() as tape:
      tape.watch(logits)
      value = categorical.estimate(objective, logits, name, seed=3,
                                   control_variate=shifted)
    return float(tf.reduce_sum(tf.square(tape.gradient(value, logits))))

  h = 1e-2
  for key in checked:
    finite_difference = (squared_gradient(key, h)
                         - squared_gradient(key, -h)) / (2 * h)
    np.testing.assert_allclose(by_name[key], finite_difference, rtol=2e-2,
                               err_msg=key)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_result_eager_function_xla(name):
  state = categorical.get(name).make_state(EVENT)
  logits = tf.constant(np.random.RandomState(1).randn(3, 2, 4) * 2,
                       tf.float32)
  logits = tf.concat([logits, tf.zeros([1, 2, 4])], 0)
  support.assert_same_in_eager_graph_xla(
      lambda logits, seed: categorical.estimate(
          objective, logits, name, seed=seed, control_variate=state),
      logits, tf.constant([4, 2]), tf.constant([4, 3]), grad_rtol=1e-4)


def test_state_gradient_same_eager_xla():
  """The state's (variance) gradient agrees too (RELAX: its path includes
  REBAR's)."""
  state = categorical.get("relax").make_state(EVENT)
  state.output_kernel.assign(tf.fill([16], 0.1))  # Reach the hidden layer.
  variables = list(state.trainable_variables)
  logits = tf.constant(np.random.RandomState(1).randn(4, 2, 4) * 2,
                       tf.float32)

  def state_grads(logits, seed):
    with tf.GradientTape() as tape:
      value = categorical.estimate(objective, logits, "relax", seed=seed,
                                   control_variate=state)
      total = tf.reduce_sum(value)
    return tape.gradient(total, variables)

  seed = tf.constant([4, 2])
  eager = state_grads(logits, seed)
  xla = tf.function(state_grads, jit_compile=True)(logits, seed)
  for a, b in zip(eager, xla):
    assert np.any(a.numpy() != 0)
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


EXTREME = np.array([[[1e4, -1e4, 0.0, 3e3], [-2e3, 1e4, -1e4, 0.0]],
                    [[-1e4, -1e4, -1e4, -1e4], [1e4, 1e4, -1e4, 5.0]]],
                   np.float32)


@pytest.mark.parametrize("name", NAMES)
def test_extreme_logits_are_finite_with_state_gradient(name):
  logits = tf.constant(EXTREME)
  state = categorical.get(name).make_state(EVENT)
  variables = list(state.trainable_variables)

  def elbo_like(z):
    log_q = tf.reduce_sum(z * tf.nn.log_softmax(logits), [-2, -1])
    return objective(z) - log_q

  with tf.GradientTape() as tape:
    tape.watch(logits)
    value = categorical.estimate(elbo_like, logits, name, seed=2,
                                 control_variate=state)
  results = [value] + tape.gradient(value, [logits] + variables)
  assert all(np.all(np.isfinite(t.numpy())) for t in results), results


@pytest.mark.parametrize("name", NAMES)
def test_non_differentiable_objective_is_refused(name):
  with pytest.raises(ValueError, match=f"'{name}'.*differentiable"):
    categorical.estimate(
        lambda z: tf.cast(tf.argmax(z, -1)[..., 0], tf.float32),
        tf.zeros([2, 2, 3]), name, seed=0)


def test_bad_state_is_refused():
  with pytest.raises(ValueError, match="`control_variate`.*log_temperature"):
    categorical.estimate(objective, LOGITS, "rebar", seed=0,
                         control_variate={"eta": tf.constant(1.0)})
  with pytest.raises(ValueError, match="`hidden_kernel` must be.*shape"):
    categorical.estimate(
        objective, LOGITS, "relax", seed=0,
        control_variate=categorical.get("relax").make_state([2, 3]))
  with pytest.raises(ValueError, match="`num_samples`"):
    categorical.estimate(objective, LOGITS, "rebar", num_samples=2, seed=0)


# --------------------------------------------------------------------------
# Keras layers.


@keras.saving.register_keras_serializable(package="tests_categorical_cv")
class SquaredErrorObjective(keras.layers.Layer):
  """f(z) = -mean((decoder(vec z) - x)^2): ``[S, B, V, C] -> [S, B]``."""

  def __init__(self, data_dim, **kwargs):
    super().__init__(**kwargs)
    self.data_dim = data_dim
    self.decoder = keras.layers.Dense(data_dim, name="decoder")

  def build(self, samples_shape, context_shape=None):
    self.decoder.build((None, samples_shape[-2] * samples_shape[-1]))

  def call(self, samples, context):
    x = context
    size = samples.shape[-2] * samples.shape[-1]
    flat = tf.reshape(samples, tf.concat([tf.shape(samples)[:2], [size]], 0))
    return -tf.reduce_mean((self.decoder(flat) - x)**2, -1)

  def get_config(self):
    return {**super().get_config(), "data_dim": self.data_dim}


def _model(name, data_dim=6):
  x = keras.Input((data_dim,), name="x")
  logits = keras.layers.Reshape(EVENT)(
      keras.layers.Dense(8, name="encoder")(x))
  latent = layers.CategoricalLatent(
      name, seed=0, objective=SquaredErrorObjective(data_dim),
      name="latent")
  return examples.EstimateModel(x, latent(logits, context=x))


def _data(n=128, dim=6):
  return np.random.RandomState(0).rand(n, dim).astype(np.float32)


@pytest.mark.parametrize("name", NAMES)
def test_layer_trains_and_round_trips_its_control_weights(name, tmp_path):
  """CategoricalLatent builds the state as weights, fit trains them, and a
  saved model restores them (and so gives the same estimates)."""
  model = _model(name)
  state = model.get_layer("latent").control_variate
  spec = categorical.get(name).state_spec(EVENT)
  assert set(state) == set(spec)
  trainable = {id(w) for w in model.trainable_variables}
  assert all(id(v) in trainable for v in state.values())
  model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
  model.fit(_data(), batch_size=32, epochs=2, verbose=0)
  moved = {k for k, v in spec.items()
           if not np.allclose(state[k].numpy(), v)}
  assert {"eta", "log_temperature"} <= moved, moved
  if name == "relax":
    assert "output_kernel" in moved
  path = str(tmp_path / f"{name}.keras")
  model.save(path)
  latent = keras.saving.load_model(path).get_layer("latent")
  assert latent.estimator == name
  assert latent.get_config()["estimator_options"] == {}
  restored = latent.control_variate
  assert set(restored) == set(state)
  for key in state:
    np.testing.assert_array_equal(restored[key].numpy(), state[key].numpy())
  x = tf.constant(_data()[:4])
  logits = tf.reshape(model.get_layer("encoder")(x), [-1] + EVENT)
  estimates = [l(logits, context=x) for l in (latent,
                                              model.get_layer("latent"))]
  np.testing.assert_allclose(estimates[0], estimates[1], rtol=1e-5)


def test_layer_config_then_weights():
  """A layer rebuilt from its config takes the control weights of another
  with ``set_weights``."""
  layer = layers.CategoricalLatent("relax", seed=3)
  layer(tf.constant(LOGITS)[tf.newaxis], objective=objective)
  for variable in layer.control_variate.values():
    variable.assign_add(tf.fill(tf.shape(variable), 0.25))
  clone = layers.CategoricalLatent.from_config(layer.get_config())
  clone.build((1, *EVENT))
  clone.set_weights(layer.get_weights())
  copied = clone.control_variate
  for key, variable in layer.control_variate.items():
    np.testing.assert_array_equal(copied[key].numpy(), variable.numpy())
  assert float(copied["eta"].numpy()) == 1.25


def test_layer_refuses_state_in_options():
  with pytest.raises(ValueError, match="owns the control-variate state"):
    layers.CategoricalLatent("rebar", estimator_options={
        "control_variate": {"eta": tf.constant(1.0),
                            "log_temperature": tf.constant(0.0)}})
