"""The latent layers with relaxation and straight-through estimators:
options and their serialization, a caller's temperature variable, and
training functional models with ``model.fit`` under ``jit_compile=True``."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_discrete import layers


def _binary_data(n=512, dim=32, seed=0):
  rng = np.random.RandomState(seed)
  prototypes = rng.rand(2, dim) < 0.5
  data = prototypes[rng.randint(2, size=n)]
  return np.logical_xor(data, rng.rand(n, dim) < 0.05).astype(np.float32)


class Annealing(keras.callbacks.Callback):
  """Assigns the next temperature of a schedule at every epoch and records
  how many times the objective has been traced by the end of each."""

  def __init__(self, variable, schedule, objective):
    super().__init__()
    self.variable, self.schedule, self.objective = (variable, schedule,
                                                    objective)
    self.traces = []

  def on_epoch_begin(self, epoch, logs=None):
    self.variable.assign(self.schedule[epoch])

  def on_epoch_end(self, epoch, logs=None):
    self.traces.append(self.objective.calls)


def _log_bernoulli(values, logits):
  return -tf.reduce_sum(tf.math.softplus(-(2.0 * values - 1.0) * logits), -1)


@keras.saving.register_keras_serializable(package="tf_discrete_tests")
class Elbo(keras.layers.Layer):
  """f(b) = log p(x|b) + log p(b) - log q(b|x) for samples b [S, B, D] in
  [0, 1] (differentiable in b), context ``[x, encoder_logits]``."""

  def __init__(self, data_dim, latent_dim, **kwargs):
    super().__init__(**kwargs)
    self.data_dim, self.latent_dim = data_dim, latent_dim
    self.decoder = keras.layers.Dense(data_dim)
    self.decoder.build((None, latent_dim))
    self.prior_logits = self.add_weight(shape=(latent_dim,),
                                        initializer="zeros")

  def call(self, samples, context):
    x, encoder_logits = context
    return (_log_bernoulli(x, self.decoder(2.0 * samples - 1.0))
            + _log_bernoulli(samples, self.prior_logits)
            - _log_bernoulli(samples, tf.stop_gradient(encoder_logits)))

  def get_config(self):
    return {**super().get_config(), "data_dim": self.data_dim,
            "latent_dim": self.latent_dim}


def negative_mean(_, estimate):
  return -tf.reduce_mean(estimate)


class CountingElbo(Elbo):
  """The ELBO, counting its (Python) calls: one per trace."""

  calls = 0

  def call(self, samples, context):
    self.calls += 1
    return super().call(samples, context)


def _bernoulli_vae(estimator, estimator_options, data_dim=32, latent_dim=8,
                   elbo_class=CountingElbo):
  x = keras.Input((data_dim,), name="x")
  logits = keras.layers.Dense(latent_dim, name="encoder")(x)
  latent = layers.BernoulliLatent(
      estimator, seed=0, objective=elbo_class(data_dim, latent_dim),
      estimator_options=estimator_options, name="latent")
  return keras.Model(x, latent(logits, context=[x, logits]))


def test_bernoulli_gumbel_softmax_trains_with_annealed_temperature_under_jit():
  data = _binary_data()
  temperature = tf.Variable(1.0, trainable=False)
  model = _bernoulli_vae("gumbel_softmax", {"temperature": temperature})
  # The caller's variable is neither a weight of the layer nor the model.
  assert all(w is not temperature for w in model.weights)
  assert len(model.weights) == 5
  model.compile(optimizer=keras.optimizers.Adam(3e-2), loss=negative_mean,
                jit_compile=True)
  temperature.assign(0.3)
  before = float(np.mean(model.predict(data, batch_size=512, verbose=0)))
  schedule = [1.0, 0.8, 0.6, 0.5, 0.4] + [0.3] * 10
  annealing = Annealing(temperature, schedule,
                        model.get_layer("latent").objective)
  history = model.fit(data, np.zeros(len(data)), batch_size=64, epochs=15,
                      verbose=0, callbacks=[annealing])
  assert np.all(np.isfinite(history.history["loss"]))
  after = float(np.mean(model.predict(data, batch_size=512, verbose=0)))
  assert after > before + 5.0, (before, after)
  # The step reads the variable: no retracing when the schedule moves on.
  assert annealing.traces[0] >= 1
  assert len(set(annealing.traces)) == 1, annealing.traces


class SquaredErrorDecoder(keras.layers.Layer):
  """f(z, x) = -||decoder(flatten(z)) - x||^2 for one-hot z [S, B, V, C]."""

  def __init__(self, num_variables, num_categories, data_dim, **kwargs):
    super().__init__(**kwargs)
    self.flat_dim = num_variables * num_categories
    self.decoder = keras.layers.Dense(data_dim)
    self.decoder.build((None, self.flat_dim))

  def call(self, z, x):
    flat = tf.reshape(z, tf.concat([tf.shape(z)[:-2], [self.flat_dim]], 0))
    return -tf.reduce_sum(tf.square(self.decoder(flat) - x), -1)


@pytest.mark.parametrize("estimator,options", [
    ("gumbel_rao", {"temperature": 0.5, "num_rao_samples": 4}),
    ("reinmax", {}),
])
def test_categorical_functional_model_trains_with_fit_under_jit(estimator,
                                                                 options):
  rng = np.random.RandomState(0)
  prototypes = rng.randn(4, 12).astype(np.float32) * 2
  data = prototypes[rng.randint(4, size=512)] + 0.1 * rng.randn(512, 12)
  data = data.astype(np.float32)
  x = keras.Input((12,))
  logits = keras.layers.Reshape((2, 4))(keras.layers.Dense(8)(x))
  latent = layers.CategoricalLatent(
      estimator, seed=1, objective=SquaredErrorDecoder(2, 4, 12),
      estimator_options=options)
  model = keras.Model(x, latent(logits, context=x))
  model.compile(optimizer=keras.optimizers.Adam(3e-2),
                loss=negative_mean, jit_compile=True)
  history = model.fit(data, np.zeros(len(data)), batch_size=64, epochs=15,
                      verbose=0)
  losses = history.history["loss"]
  assert np.all(np.isfinite(losses))
  assert losses[-1] < 0.5 * losses[0], losses


# ---------------------------------------------------------------------------
# Options and serialization.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("layer_class,estimator", [
    (layers.BernoulliLatent, "gumbel_softmax"),
    (layers.BernoulliLatent, "gumbel_rao"),
    (layers.CategoricalLatent, "st_gumbel_softmax"),
    (layers.CategoricalLatent, "reinmax"),
])
def test_float_temperature_round_trips_as_a_float(layer_class, estimator):
  options = {"temperature": 0.25}
  if estimator == "gumbel_rao":
    options["num_rao_samples"] = 3
  layer = layer_class(estimator, seed=2, estimator_options=options)
  config = layer.get_config()
  assert config["estimator_options"] == options
  assert isinstance(config["estimator_options"]["temperature"], float)
  clone = layer_class.from_config(config)
  assert clone.get_config() == config
  restored = keras.saving.deserialize_keras_object(
      keras.saving.serialize_keras_object(layer))
  assert dict(restored.estimator_options) == options


@pytest.mark.parametrize("variable", [tf.Variable(0.4),
                                      keras.Variable(0.4, trainable=False)])
def test_variable_temperature_is_the_callers(variable):
  layer = layers.CategoricalLatent("gumbel_softmax", seed=2,
                                   estimator_options={"temperature": variable})
  assert layer.weights == []  # Not tracked as a weight of the layer.
  logits = tf.zeros([3, 2, 4])
  first = layer(logits, objective=lambda z: tf.reduce_sum(z**2, [-2, -1]))
  # Serialized as its current value, a float: the restored layer has that
  # fixed temperature.
  config = layer.get_config()
  assert config["estimator_options"]["temperature"] == pytest.approx(0.4)
  assert isinstance(config["estimator_options"]["temperature"], float)
  clone = layers.CategoricalLatent.from_config(config)
  variable.assign(0.1)
  assert clone.get_config()["estimator_options"]["temperature"] == (
      pytest.approx(0.4))
  assert layer.get_config()["estimator_options"]["temperature"] == (
      pytest.approx(0.1))
  assert first.shape == (3,)


def test_functional_model_with_relaxation_serializes():
  model = _bernoulli_vae("reinmax", {"temperature": 0.7}, data_dim=16,
                         elbo_class=Elbo)
  clone = keras.Model.from_config(model.get_config())
  latent = clone.get_layer("latent")
  assert latent.estimator == "reinmax"
  assert dict(latent.estimator_options) == {"temperature": 0.7}
  assert isinstance(latent.objective, Elbo)


@pytest.mark.parametrize("options,error,message", [
    ({"temperature": 0.0}, ValueError, "`temperature`.*positive"),
    ({"temperature": "hot"}, TypeError, "`temperature`.*positive number"),
    ({"num_rao_samples": 0}, ValueError, "`num_rao_samples`.*positive"),
    ({"tau": 1.0}, TypeError, "unknown options"),
])
def test_invalid_options_fail_at_construction(options, error, message):
  with pytest.raises(error, match=message):
    layers.BernoulliLatent("gumbel_rao", estimator_options=options)
  with pytest.raises(error, match=message):
    layers.CategoricalLatent("gumbel_rao", estimator_options=options)


def test_non_differentiable_objective_is_refused_by_the_layer():
  layer = layers.BernoulliLatent("straight_through", seed=0)
  with pytest.raises(ValueError, match="'straight_through'.*differentiable"):
    layer(tf.zeros([2, 3]), objective=lambda b: tf.reduce_sum(
        tf.round(b), -1))
