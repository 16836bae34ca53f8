r"""Trains a Bernoulli VAE with a chosen gradient estimator (DisARM protocol).

The official DisARM launcher's README command runs with only the module name
changed:

    python -m experiments.binary_vae --dataset=dynamic_mnist \
      --grad_type=disarm --encoder_type=nonlinear --num_steps=1000000 \
      --demean_input --initialize_with_bias

Outputs in --logdir: metrics.jsonl + TensorBoard events (every
--eval_every steps: train ELBO, valid/test IWAE bounds, encoder gradient
variance), checkpoints/ (a rerun with the same flags resumes), and at the
end summary.json and curves.png. See docs/binary_vae.md.

Flags that cannot apply to the chosen configuration are usage errors,
reported before any data is loaded.
"""

import os
from typing import Any, Dict, Mapping

from absl import app
from absl import flags
from absl import logging
import keras
import numpy as np

from tf_discrete import bernoulli
from tf_discrete import datasets
from tf_discrete import training
from tf_discrete import vae

# Spellings of the official launcher.
GRAD_TYPE_ALIASES = {"reinforce_loo": "rloo", "local-disarm": "local_disarm"}
# A tiny generated data set (grey-level images near a few prototypes) for
# smoke tests of an installation and for the test suite; not a benchmark.
SYNTHETIC = "synthetic"
# Flags that may change when a run is resumed from its logdir.
RESUMABLE = ("num_steps", "eval_every", "checkpoint_every", "log_every",
             "data_dir", "manual_dir", "strategy", "tpu", "jit_compile")


flags.DEFINE_enum("dataset", "dynamic_mnist",
                  datasets.available() + [SYNTHETIC],
                  "Data set; 'synthetic' is a tiny generated set for smoke "
                  "tests.")
flags.DEFINE_enum("grad_type", "disarm",
                  sorted(bernoulli.available() + list(GRAD_TYPE_ALIASES)),
                  "Gradient estimator (tf_discrete.bernoulli.available(); "
                  "also the official spellings reinforce_loo, local-disarm).")
flags.DEFINE_enum("encoder_type", "linear", list(vae.ENCODER_TYPES),
                  "linear: x->Dense(200); nonlinear: 784-200-200-200 with "
                  "LeakyReLU(0.3); decoders mirror the encoder.")
flags.DEFINE_float("genmo_lr", 1e-4, "Adam learning rate of the decoder.")
flags.DEFINE_float("infnet_lr", 1e-4, "Adam learning rate of the encoder.")
flags.DEFINE_float("prior_lr", 1e-2, "SGD learning rate of the prior logits.")
flags.DEFINE_integer("batch_size", 50, "Global batch size.", lower_bound=1)
flags.DEFINE_integer("num_steps", 1_000_000, "Training steps.", lower_bound=1)
flags.DEFINE_integer(
    "num_pairs", None,
    "Objective evaluations per stochastic layer = 2*num_pairs: vimco uses "
    "K=2*num_pairs samples, local_disarm/disarm/arm num_pairs pairs, rloo/"
    "reinforce/ar 2*num_pairs samples. Unset: each estimator's default "
    "(2 evaluations; 1 for reinforce and ar).", lower_bound=1)
flags.DEFINE_bool("demean_input", False,
                  "Subtract the training mean at the encoder input; feed "
                  "2b-1 to the data decoder.")
flags.DEFINE_bool("initialize_with_bias", False,
                  "Decoder output bias = logit of the training mean.")
flags.DEFINE_bool("shared_randomness", False,
                  "Multi-layer: re-sample the layers below an estimated layer "
                  "with the same per-layer uniforms in every branch.")
flags.DEFINE_integer("num_eval_samples", 100,
                     "Samples of the valid/test IWAE bound.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of initialization, data order and "
                     "every sample.", lower_bound=0, upper_bound=2**31 - 1)
flags.DEFINE_string("logdir", None,
                    "Output folder (default: /tmp/tf_discrete/binary_vae/"
                    "<dataset>-<grad_type>-<encoder_type>-L<num_layers>-"
                    "seed<seed>). An existing run there is resumed.")
flags.DEFINE_bool("bias_check", False,
                  "At each evaluation, compare the mean of "
                  "--bias_check_repeats encoder gradients on a fixed batch "
                  "(the first --batch_size fixed validation images) with the "
                  "mean of --bias_check_repeats/10 RLOO gradients with "
                  "--bias_check_reference_samples samples; logs "
                  "bias_check/relative_error and bias_check/relative_noise.")
flags.DEFINE_integer("bias_check_repeats", None,
                     "Gradients averaged by --bias_check (default 1000).",
                     lower_bound=1)
flags.DEFINE_integer("bias_check_reference_samples", None,
                     "RLOO samples of the --bias_check reference (default "
                     "100).", lower_bound=2)
flags.DEFINE_bool("estimate_grad_basket", False,
                  "Also track the encoder gradient variance of the other "
                  "estimators of the same bound and cost on the training "
                  "batches (computed, not applied).")
flags.DEFINE_integer("num_layers", 1, "Stochastic layers of 200 units.",
                     lower_bound=1, upper_bound=vae.MAX_LAYERS)
flags.DEFINE_enum("strategy", "default", list(training.STRATEGIES),
                  "tf.distribute strategy.")
flags.DEFINE_string("tpu", None, "TPU address (--strategy=tpu only).")
flags.DEFINE_bool("jit_compile", True, "XLA-compile training and evaluation.")
flags.DEFINE_integer("eval_every", 10_000, "Evaluation cadence in steps.",
                     lower_bound=1)
flags.DEFINE_integer("checkpoint_every", 10_000,
                     "Checkpoint cadence in steps.", lower_bound=1)
flags.DEFINE_integer("log_every", 1_000, "Progress-line cadence in steps.",
                     lower_bound=1)
flags.DEFINE_string("data_dir", None, "tfds data directory for prepared data "
                    "(default $TF_DISCRETE_DATA_DIR or the tfds default).")
flags.DEFINE_string("manual_dir", None, "Root of the raw data files (default "
                    "$TF_DISCRETE_MANUAL_DIR).")
flags.DEFINE_enum("decoder_grad", vae.ESTIMATOR_SAMPLES,
                  list(vae.DECODER_GRADS),
                  "Decoder/prior gradient: pathwise gradient of the "
                  "estimator's own evaluations (no extra pass), or of a "
                  "separate forward sample (official protocol).")

FLAGS = flags.FLAGS
FLAG_NAMES = (
    "dataset", "grad_type", "encoder_type", "genmo_lr", "infnet_lr",
    "prior_lr", "batch_size", "num_steps", "num_pairs", "demean_input",
    "initialize_with_bias", "shared_randomness", "num_eval_samples", "seed",
    "logdir", "bias_check", "bias_check_repeats",
    "bias_check_reference_samples", "estimate_grad_basket", "num_layers",
    "strategy", "tpu", "jit_compile", "eval_every", "checkpoint_every",
    "log_every", "data_dir", "manual_dir", "decoder_grad")


def default_flag_values() -> Dict[str, Any]:
  """The binary's flags at their defaults (for programmatic runs)."""
  return {name: FLAGS[name].default for name in FLAG_NAMES}


def vae_config(values: Mapping[str, Any]) -> vae.VAEConfig:
  """The model configuration; raises ValueError for inapplicable flags."""
  num_pairs = values["num_pairs"]
  return vae.VAEConfig(
      estimator=GRAD_TYPE_ALIASES.get(values["grad_type"],
                                      values["grad_type"]),
      num_samples=None if num_pairs is None else 2 * num_pairs,
      encoder_type=values["encoder_type"],
      num_layers=values["num_layers"],
      demean_input=values["demean_input"],
      initialize_with_bias=values["initialize_with_bias"],
      shared_randomness=values["shared_randomness"],
      decoder_grad=values["decoder_grad"])


def check_flags(values: Mapping[str, Any]) -> vae.VAEConfig:
  """Validates the flags together; returns the model configuration.

  Raises:
    ValueError: a flag that cannot apply to the configuration.
  """
  config = vae_config(values)
  if values["tpu"] is not None and values["strategy"] != "tpu":
    raise ValueError("--tpu needs --strategy=tpu.")
  if values["strategy"] == "tpu" and not values["jit_compile"]:
    raise ValueError("--nojit_compile does not apply to --strategy=tpu: the "
                     "TPU always compiles with XLA.")
  bias_options = ("bias_check_repeats", "bias_check_reference_samples")
  if not values["bias_check"]:
    given = [f"--{k}" for k in bias_options if values[k] is not None]
    if given:
      raise ValueError(f"{', '.join(given)} need --bias_check.")
  elif vae.is_multi_sample_bound(config.estimator):
    raise ValueError(
        f"--bias_check compares with an RLOO reference of the ELBO gradient; "
        f"'{config.estimator}' estimates the gradient of a multi-sample bound, "
        f"for which no reference is implemented.")
  if values["estimate_grad_basket"] and not vae.gradient_basket(config)[0]:
    raise ValueError(
        f"--estimate_grad_basket: no other estimator is comparable with "
        f"'{config.estimator}' at {config.evaluations} evaluations "
        f"({vae.gradient_basket(config)[1]}).")
  if values["dataset"] == SYNTHETIC:
    given = [f"--{k}" for k in ("data_dir", "manual_dir") if values[k]]
    if given:
      raise ValueError(f"{', '.join(given)} do not apply to --dataset="
                       f"{SYNTHETIC}.")
  return config


def synthetic_splits(seed: int = 0, num_train: int = 2000,
                     num_eval: int = 500, num_prototypes: int = 8):
  """Grey-level 784-pixel images near a few random prototypes."""
  rng = np.random.RandomState(seed)
  prototypes = rng.beta(0.3, 1.0, size=(num_prototypes, 784))

  def draw(n):
    images = prototypes[rng.randint(num_prototypes, size=n)]
    return np.clip(images + 0.05 * rng.randn(n, 784), 0, 1).astype(
        np.float32)

  train = draw(num_train)
  return datasets.Splits(
      name=SYNTHETIC, train=train, valid=draw(num_eval), test=draw(num_eval),
      train_mean=train.mean(0).astype(np.float32), dynamic=True)


def load_data(values: Mapping[str, Any]):
  if values["dataset"] == SYNTHETIC:
    return synthetic_splits(values["seed"])
  return datasets.load(values["dataset"], manual_dir=values["manual_dir"],
                       data_dir=values["data_dir"])


def optimizer_fns(values: Mapping[str, Any]):
  """Encoder Adam(infnet_lr), decoder Adam(genmo_lr), prior SGD(prior_lr)."""
  return {
      "encoder": lambda: keras.optimizers.Adam(values["infnet_lr"]),
      "decoder": lambda: keras.optimizers.Adam(values["genmo_lr"]),
      "prior": lambda: keras.optimizers.SGD(values["prior_lr"]),
  }


def default_logdir(values: Mapping[str, Any]) -> str:
  return os.path.join(
      "/tmp/tf_discrete/binary_vae",
      f"{values['dataset']}-{values['grad_type']}-{values['encoder_type']}-"
      f"L{values['num_layers']}-seed{values['seed']}")


def run(values: Mapping[str, Any], splits=None) -> Dict[str, Any]:
  """Trains with the given flag values; returns the summary.

  Args:
    values: every flag of this binary (see :func:`default_flag_values`).
    splits: data with the ``tf_discrete.datasets.Splits`` attributes; loaded
      from ``values`` when None.
  """
  values = dict(values)
  config = check_flags(values)
  values["logdir"] = values["logdir"] or default_logdir(values)
  strategy = training.make_strategy(values["strategy"], values["tpu"])
  splits = splits if splits is not None else load_data(values)
  eval_sets = [
      training.EvalSet("train_elbo", splits.train, 1, splits.dynamic),
      training.EvalSet("valid_iwae", splits.fixed_eval_set("valid"),
                       values["num_eval_samples"]),
      training.EvalSet("test_iwae", splits.fixed_eval_set("test"),
                       values["num_eval_samples"]),
  ]
  basket = ()
  if values["estimate_grad_basket"]:
    names, excluded = vae.gradient_basket(config)
    for name, reason in excluded.items():
      logging.warning("Gradient basket: %s excluded: %s", name, reason)
    basket = tuple((name, config.evaluations) for name in names)
  bias_check = None
  if values["bias_check"]:
    repeats = values["bias_check_repeats"] or 1000
    bias_check = training.BiasCheck(
        images=splits.fixed_eval_set("valid")[:values["batch_size"]],
        reference_num_samples=values["bias_check_reference_samples"] or 100,
        repeats=repeats, reference_repeats=max(1, repeats // 10))
  train_config = training.TrainConfig(
      logdir=values["logdir"], num_steps=values["num_steps"],
      batch_size=values["batch_size"], seed=values["seed"],
      eval_every=values["eval_every"],
      checkpoint_every=values["checkpoint_every"],
      log_every=values["log_every"], jit_compile=values["jit_compile"],
      basket=basket, bias_check=bias_check)
  logging.info("Model: %s", config)
  trainer = training.Trainer(
      lambda: vae.BernoulliVAE(config, splits.train_mean, seed=values["seed"]),
      optimizer_fns(values), splits.train, eval_sets, train_config,
      dynamic=splits.dynamic, strategy=strategy,
      run_config={**values, "estimator": config.estimator,
                  "evaluations_per_layer": config.evaluations},
      resumable_keys=RESUMABLE)
  return trainer.run()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  values = {name: FLAGS[name].value for name in FLAG_NAMES}
  try:
    check_flags(values)  # Before any data is loaded.
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  summary = run(values)
  logging.info("Summary: %s", {k: v for k, v in summary.items()
                               if k != "flags"})


if __name__ == "__main__":
  app.run(main)
