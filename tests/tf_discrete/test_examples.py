"""The example models train the Keras way and round-trip through saving."""

import keras
import numpy as np
import tensorflow as tf

from tf_discrete import examples


def _data(n=512, dim=16, seed=0):
  rng = np.random.RandomState(seed)
  prototypes = rng.rand(4, dim) < 0.5
  data = prototypes[rng.randint(4, size=n)]
  return np.logical_xor(data, rng.rand(n, dim) < 0.05).astype(np.float32)


def test_functional_vae_fits_without_targets_and_reports_its_elbo():
  data = _data()
  model = examples.functional_bernoulli_vae(16, 4, "disarm", seed=0)
  model.compile(optimizer=keras.optimizers.Adam(3e-2), jit_compile=True)
  before = model.evaluate(data, batch_size=256, verbose=0, return_dict=True)
  history = model.fit(data, batch_size=64, epochs=8, verbose=0)
  after = model.evaluate(data, batch_size=256, verbose=0, return_dict=True)
  assert set(after) == {"elbo", "loss"}
  assert after["loss"] == -after["elbo"]
  assert after["elbo"] > before["elbo"] + 2.0, (before, after)
  assert history.history["elbo"][-1] > history.history["elbo"][0]


def test_two_layer_vae_fits_without_targets():
  data = _data()
  model = examples.TwoLayerBernoulliVAE(16, 4, "disarm", seed=0)
  model.compile(optimizer=keras.optimizers.Adam(3e-2), jit_compile=True)
  before = model.evaluate(data, batch_size=256, verbose=0, return_dict=True)
  model.fit(data, batch_size=64, epochs=8, verbose=0)
  after = model.evaluate(data, batch_size=256, verbose=0, return_dict=True)
  assert after["elbo"] > before["elbo"] + 2.0, (before, after)


def _round_trip(model, tmp_path, x):
  path = str(tmp_path / "model.keras")
  model.save(path)
  loaded = keras.models.load_model(path)
  assert type(loaded) is type(model)
  for a, b in zip(model.weights, loaded.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  # Same weights and the same seed-generator state: the next seeded
  # estimates agree exactly.
  np.testing.assert_array_equal(model(x).numpy(), loaded(x).numpy())
  np.testing.assert_array_equal(model(x).numpy(), loaded(x).numpy())
  return loaded


def test_functional_vae_saves_and_loads_with_weights(tmp_path):
  data = _data()
  model = examples.functional_bernoulli_vae(16, 4, "rloo", seed=3)
  model.compile(optimizer=keras.optimizers.Adam(1e-2))
  model.fit(data, batch_size=64, epochs=1, verbose=0)
  loaded = _round_trip(model, tmp_path, tf.constant(data[:32]))
  loaded.compile(optimizer=keras.optimizers.Adam(1e-2))
  loaded.fit(data, batch_size=64, epochs=1, verbose=0)  # Still trains.


def test_two_layer_vae_saves_and_loads_with_weights(tmp_path):
  data = _data()
  model = examples.TwoLayerBernoulliVAE(16, 4, "disarm", seed=1)
  model.compile(optimizer=keras.optimizers.Adam(1e-2))
  model.fit(data, batch_size=64, epochs=1, verbose=0)
  _round_trip(model, tmp_path, tf.constant(data[:32]))
