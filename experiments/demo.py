"""A one-minute demo: a small Bernoulli VAE built from the layers.

    python -m experiments.demo --estimator=disarm --epochs=10

Trains ``tf_discrete.examples.functional_bernoulli_vae`` with ``model.fit``
(XLA-compiled) on synthetic binary data drawn from a few noisy prototypes and
prints the mean ELBO before and after training, per epoch in between.
"""

import keras
import numpy as np

from experiments import cli
from experiments.cli import Flag
from tf_discrete import bernoulli
from tf_discrete import examples

FLAG_SPECS = {
    "estimator": Flag("enum", "disarm", "Bernoulli gradient estimator.",
                      dict(enum_values=bernoulli.available())),
    "epochs": Flag("integer", 10, "Training epochs.", dict(lower_bound=1)),
    "latent_dim": Flag("integer", 16, "Bernoulli latents.",
                       dict(lower_bound=1)),
    "seed": Flag("integer", 0, "Seed for data and sampling."),
}


def synthetic_data(n=4096, dim=64, num_prototypes=4, noise=0.05, seed=0):
  """Binary vectors near a few random prototypes (flip probability noise)."""
  rng = np.random.RandomState(seed)
  prototypes = rng.rand(num_prototypes, dim) < 0.5
  data = prototypes[rng.randint(num_prototypes, size=n)]
  return np.logical_xor(data, rng.rand(n, dim) < noise).astype(np.float32)


def main(values):
  keras.utils.set_random_seed(values["seed"])
  data = synthetic_data(seed=values["seed"])
  model = examples.functional_bernoulli_vae(
      data.shape[1], values["latent_dim"], values["estimator"],
      seed=values["seed"])
  model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True)
  elbo = lambda: float(np.mean(model.predict(data, batch_size=1024,
                                             verbose=0)))
  print(f"estimator={values['estimator']} data={data.shape} "
        f"initial ELBO {elbo():.3f}")
  for epoch in range(values["epochs"]):
    model.fit(data, batch_size=64, epochs=1, verbose=0)
    print(f"epoch {epoch + 1:3d}  ELBO {elbo():.3f}")


if __name__ == "__main__":
  cli.run_program(FLAG_SPECS, main)
