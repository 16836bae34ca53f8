"""BernoulliLatent and CategoricalLatent in Keras models: serialization,
fit, XLA, distribution."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_discrete import examples
from tf_discrete import layers


def _synthetic_binary_data(n=512, dim=32, seed=0):
  """Two prototypes with 5% pixel noise: a VAE can learn them quickly."""
  rng = np.random.RandomState(seed)
  prototypes = rng.rand(2, dim) < 0.5
  data = prototypes[rng.randint(2, size=n)]
  flip = rng.rand(n, dim) < 0.05
  return np.logical_xor(data, flip).astype(np.float32)


def _mean_elbo(model, data):
  return float(np.mean(model.predict(data, batch_size=len(data), verbose=0)))


def test_config_round_trip():
  layer = layers.BernoulliLatent("rloo", num_samples=4, seed=3, name="z")
  clone = layers.BernoulliLatent.from_config(layer.get_config())
  assert clone.get_config() == layer.get_config()
  assert (clone.estimator, clone.num_samples, clone.seed) == ("rloo", 4, 3)


def test_config_round_trip_with_objective_layer():
  layer = layers.BernoulliLatent(
      "disarm", seed=1, objective=examples.BernoulliElbo(16))
  clone = layers.BernoulliLatent.from_config(layer.get_config())
  assert isinstance(clone.objective, examples.BernoulliElbo)
  assert clone.objective.data_dim == 16


def test_unknown_estimator_fails_at_construction():
  with pytest.raises(ValueError, match="available"):
    layers.BernoulliLatent("nope")


def test_sampling_without_objective():
  layer = layers.BernoulliLatent(seed=0)
  logits = tf.constant([[-1e4, 1e4, 0.0]] * 1000)
  samples = layer(logits).numpy()
  assert samples.shape == (1000, 3)
  assert set(np.unique(samples)) <= {0.0, 1.0}
  np.testing.assert_allclose(samples.mean(0), [0, 1, 0.5], atol=0.06)


def test_seeded_layer_replays_its_sequence():
  logits = tf.zeros([2, 8])
  first = layers.BernoulliLatent(seed=5)
  second = layers.BernoulliLatent(seed=5)
  a = [first(logits).numpy() for _ in range(3)]
  b = [second(logits).numpy() for _ in range(3)]
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a[0], a[1])  # Fresh seed on every call.


def test_functional_vae_trains_with_fit_and_jit():
  data = _synthetic_binary_data()
  model = examples.functional_bernoulli_vae(32, 8, "disarm", seed=0)
  model.compile(optimizer=keras.optimizers.Adam(3e-2), jit_compile=True)
  before = _mean_elbo(model, data)
  model.fit(data, batch_size=64, epochs=15, verbose=0)
  after = _mean_elbo(model, data)
  assert after > before + 5.0, (before, after)


def test_functional_model_serializes():
  model = examples.functional_bernoulli_vae(16, 4, "rloo", seed=0)
  clone = keras.Model.from_config(model.get_config())
  latent = clone.get_layer("latent")
  assert latent.estimator == "rloo"
  assert isinstance(latent.objective, examples.BernoulliElbo)


@pytest.mark.parametrize("estimator", ["disarm", "rloo"])
def test_two_stochastic_layers_train(estimator):
  data = _synthetic_binary_data()
  model = examples.TwoLayerBernoulliVAE(32, 8, estimator, seed=0)
  model.compile(optimizer=keras.optimizers.Adam(3e-2), jit_compile=True)
  before = _mean_elbo(model, data)
  model.fit(data, batch_size=64, epochs=15, verbose=0)
  after = _mean_elbo(model, data)
  assert after > before + 5.0, (before, after)


def _recording(layer, record):
  """Wraps ``layer.call`` so that its outputs are appended to ``record``."""
  call = layer.call

  def recorded(*args, **kwargs):
    out = call(*args, **kwargs)
    record.append(out)
    return out

  layer.call = recorded


def test_second_layer_gets_only_its_estimator_gradient():
  """The model's value is layer 1's estimate exactly; layer 2's estimate
  reaches its encoder but gives the decoders and the prior no gradient."""
  model = examples.TwoLayerBernoulliVAE(6, 3, "disarm", seed=0)
  x = tf.constant(_synthetic_binary_data(8, 6))
  model(x)  # Builds.
  first, second = [], []
  _recording(model.latent1, first)
  _recording(model.latent2, second)
  generative = (model.decoder1.trainable_variables +
                model.decoder2.trainable_variables + [model.prior_logits])
  with tf.GradientTape(persistent=True) as tape:
    elbo = model(x)
  (layer1,), (layer2,) = first, second
  # Exactly but for rounding: elbo + layer2 - stop_gradient(layer2).
  np.testing.assert_allclose(elbo.numpy(), layer1.numpy(), rtol=1e-6)
  assert all(g is None or not np.any(g.numpy())
             for g in tape.gradient(layer2, generative))
  assert all(g is not None and np.any(g.numpy())
             for g in tape.gradient(elbo, generative))
  grads = tape.gradient(elbo, model.encoder2.trainable_variables)
  assert all(g is not None and np.any(g.numpy()) for g in grads)


_MIRRORED_SCRIPT = textwrap.dedent("""
    import numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tf_discrete import examples
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    rng = np.random.RandomState(0)
    data = (rng.rand(256, 16) < 0.3).astype(np.float32)
    with strategy.scope():
      model = examples.functional_bernoulli_vae(16, 4, "disarm", seed=0)
      model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(data, batch_size=32, epochs=2,
                        verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)), losses
    print("MIRRORED_OK", losses)
""")


def test_mirrored_strategy_two_logical_cpus():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  result = subprocess.run([sys.executable, "-c", _MIRRORED_SCRIPT],
                          capture_output=True, text=True, env=env, timeout=300)
  assert "MIRRORED_OK" in result.stdout, result.stderr[-3000:]


# ---------------------------------------------------------------------------
# CategoricalLatent.
# ---------------------------------------------------------------------------


def test_categorical_layer_config_round_trip():
  layer = layers.CategoricalLatent("disarm_sb", num_samples=4, seed=3,
                                   estimator_options={"logits_order": "abs"},
                                   name="z")
  config = layer.get_config()
  clone = layers.CategoricalLatent.from_config(config)
  assert clone.get_config() == config
  assert clone.estimator == "disarm_sb" and clone.num_samples == 4
  restored = keras.saving.deserialize_keras_object(
      keras.saving.serialize_keras_object(layer))
  assert isinstance(restored, layers.CategoricalLatent)
  assert restored.estimator_options == {"logits_order": "abs"}
  assert layers.CategoricalLatent().estimator == "rloo"


def test_categorical_layer_rejects_unknown_estimator():
  with pytest.raises(ValueError, match="`estimator`"):
    layers.CategoricalLatent("arm")


def test_invalid_options_fail_at_construction():
  with pytest.raises(ValueError, match="`logits_order`.*'ascending'"):
    layers.CategoricalLatent("disarm_sb",
                             estimator_options={"logits_order": "up"})
  with pytest.raises(TypeError, match="unknown options"):
    layers.CategoricalLatent("disarm_sb", estimator_options={"order": "abs"})
  with pytest.raises(TypeError, match="takes no options"):
    layers.BernoulliLatent("disarm", estimator_options={"temperature": 1.0})


def test_categorical_layer_samples_without_objective():
  layer = layers.CategoricalLatent(seed=0)
  z = layer(tf.zeros([5, 3, 4]))
  assert z.shape == (5, 3, 4)
  np.testing.assert_array_equal(tf.reduce_sum(z, -1), 1.0)


class TinyCategoricalVAE(keras.Model):
  """x -> logits [B, 2, 3] -> CategoricalLatent -> decoder -> -squared error."""

  def __init__(self, estimator):
    super().__init__()
    self.encoder = keras.layers.Dense(6)
    self.latent = layers.CategoricalLatent(estimator, seed=1)
    self.decoder = keras.layers.Dense(4)

  def call(self, x):
    logits = tf.reshape(self.encoder(x), [-1, 2, 3])

    def neg_error(z):  # [S, B, 2, 3] -> [S, B]
      flat = tf.reshape(z, tf.concat([tf.shape(z)[:2], [6]], 0))
      return -tf.reduce_mean((self.decoder(flat) - x)**2, -1)

    return self.latent(logits, objective=neg_error)


@pytest.mark.parametrize("estimator", ["rloo", "arsm_plus", "disarm_iw"])
def test_categorical_layer_trains_in_model_fit(estimator):
  x = np.random.RandomState(0).rand(32, 4).astype(np.float32)
  model = TinyCategoricalVAE(estimator)
  model.compile(optimizer=keras.optimizers.Adam(0.01),
                loss=lambda y, value: -tf.reduce_mean(value))
  encoder_before = None
  model(x[:2])
  encoder_before = model.encoder.kernel.numpy().copy()
  history = model.fit(x, np.zeros(32, np.float32), batch_size=8, epochs=2,
                      verbose=0)
  assert np.all(np.isfinite(history.history["loss"]))
  assert not np.allclose(encoder_before, model.encoder.kernel.numpy())
