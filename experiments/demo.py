"""A one-minute demo: a small Bernoulli VAE built from the layers.

    python -m experiments.demo --estimator=disarm --epochs=10

Trains ``tf_discrete.examples.functional_bernoulli_vae`` with ``model.fit``
(XLA-compiled) on synthetic binary data drawn from a few noisy prototypes and
prints the mean ELBO before and after training, per epoch in between.
"""

from absl import app
from absl import flags
import keras
import numpy as np

from tf_discrete import bernoulli
from tf_discrete import examples

_ESTIMATOR = flags.DEFINE_enum("estimator", "disarm", bernoulli.available(),
                               "Bernoulli gradient estimator.")
_EPOCHS = flags.DEFINE_integer("epochs", 10, "Training epochs.")
_LATENT_DIM = flags.DEFINE_integer("latent_dim", 16, "Bernoulli latents.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed for data and sampling.")


def synthetic_data(n=4096, dim=64, num_prototypes=4, noise=0.05, seed=0):
  """Binary vectors near a few random prototypes (flip probability noise)."""
  rng = np.random.RandomState(seed)
  prototypes = rng.rand(num_prototypes, dim) < 0.5
  data = prototypes[rng.randint(num_prototypes, size=n)]
  return np.logical_xor(data, rng.rand(n, dim) < noise).astype(np.float32)


def main(argv):
  del argv
  keras.utils.set_random_seed(_SEED.value)
  data = synthetic_data(seed=_SEED.value)
  model = examples.functional_bernoulli_vae(
      data.shape[1], _LATENT_DIM.value, _ESTIMATOR.value, seed=_SEED.value)
  model.compile(optimizer=keras.optimizers.Adam(1e-2),
                loss=examples.negative_elbo_loss, jit_compile=True)
  elbo = lambda: float(np.mean(model.predict(data, batch_size=1024,
                                             verbose=0)))
  print(f"estimator={_ESTIMATOR.value} data={data.shape} "
        f"initial ELBO {elbo():.3f}")
  for epoch in range(_EPOCHS.value):
    model.fit(data, np.zeros(len(data)), batch_size=64, epochs=1, verbose=0)
    print(f"epoch {epoch + 1:3d}  ELBO {elbo():.3f}")


if __name__ == "__main__":
  app.run(main)
