"""What the VAE experiment binaries share: flags, data, trainer assembly.

``experiments.binary_vae`` (Bernoulli latents) and
``experiments.categorical_vae`` (categorical latents) differ only in their
model and model flags. Everything else lives here once: the common flags
(declared as :class:`Flag` specs, so that a binary's defaults are known
without defining any absl flag), the tiny synthetic data set, data loading,
the optimizers, the evaluation sets, the default output folder and the
:class:`tf_discrete.training.Trainer` of a run.

Flags are defined in absl only when a binary runs as the program
(:func:`run_program`); importing a binary defines none, so both binaries
(and their tests) can share one Python process. Programmatic runs pass a
dict of flag values (``default_flag_values()`` of the binary, updated).
"""

import dataclasses
import os
import sys
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
import keras
import numpy as np

from tf_discrete import datasets
from tf_discrete import training
from tf_discrete import vae

# A tiny generated data set (grey-level images near a few prototypes) for
# smoke tests of an installation and for the test suites; not a benchmark.
SYNTHETIC = "synthetic"
# Flags that may change when a run is resumed from its logdir.
RESUMABLE = ("num_steps", "eval_every", "checkpoint_every", "log_every",
             "data_dir", "manual_dir", "strategy", "tpu", "jit_compile")
# Root of the default --logdir of every binary.
DEFAULT_LOGDIR_ROOT = "/tmp/tf_discrete"


@dataclasses.dataclass(frozen=True)
class Flag:
  """An absl flag, declared without defining it.

  Attributes:
    kind: the ``flags.DEFINE_<kind>`` function: "bool", "enum", "float",
      "integer", "list" or "string".
    default: the default value.
    help: the help text.
    options: further keywords of the DEFINE function (``enum_values``,
      ``lower_bound``, ``upper_bound``).
  """
  kind: str
  default: Any
  help: str
  options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def define(self, name: str, flag_values: flags.FlagValues,
             module_name: Optional[str] = None):
    define = getattr(flags, f"DEFINE_{self.kind}")
    define(name=name, default=self.default, help=self.help,
           flag_values=flag_values, module_name=module_name, **self.options)


def common_flags(**overrides: Mapping[str, Any]) -> Dict[str, Flag]:
  """The flags every VAE binary has.

  Args:
    **overrides: per flag name, the :class:`Flag` fields a binary changes
      (e.g. ``batch_size={"default": 200}``).
  """
  specs = {
      "dataset": Flag(
          "enum", "dynamic_mnist",
          "Data set; 'synthetic' is a tiny generated set for smoke tests.",
          dict(enum_values=datasets.available() + [SYNTHETIC])),
      "genmo_lr": Flag("float", 1e-4, "Adam learning rate of the decoder."),
      "infnet_lr": Flag("float", 1e-4, "Adam learning rate of the encoder."),
      "prior_lr": Flag("float", 1e-2,
                       "SGD learning rate of the prior logits."),
      "batch_size": Flag("integer", 50, "Global batch size.",
                         dict(lower_bound=1)),
      "num_steps": Flag("integer", 1_000_000, "Training steps.",
                        dict(lower_bound=1)),
      "demean_input": Flag(
          "bool", False,
          "Subtract the training mean at the encoder input; feed 2s-1 to "
          "the data decoder (s: its 0/1 input)."),
      "initialize_with_bias": Flag(
          "bool", False, "Decoder output bias = logit of the training mean."),
      "decoder_grad": Flag(
          "enum", vae.ESTIMATOR_SAMPLES,
          "Decoder/prior gradient: pathwise gradient of the estimator's own "
          "evaluations (no extra pass), or of a separate forward sample "
          "(official protocol).", dict(enum_values=list(vae.DECODER_GRADS))),
      "num_eval_samples": Flag(
          "integer", 100, "Samples of the valid/test IWAE bound.",
          dict(lower_bound=1)),
      "seed": Flag("integer", 0,
                   "Seed of initialization, data order and every sample.",
                   dict(lower_bound=0, upper_bound=2**31 - 1)),
      "logdir": Flag("string", None,
                     "Output folder. An existing run there is resumed."),
      "bias_check": Flag(
          "bool", False,
          "At each evaluation, compare the mean of --bias_check_repeats "
          "encoder gradients on a fixed batch (the first --batch_size fixed "
          "validation images) with the mean of --bias_check_repeats/10 RLOO "
          "gradients with --bias_check_reference_samples samples; logs "
          "bias_check/relative_error and bias_check/relative_noise."),
      "bias_check_repeats": Flag(
          "integer", None,
          "Gradients averaged by --bias_check (default 1000).",
          dict(lower_bound=1)),
      "bias_check_reference_samples": Flag(
          "integer", None,
          "RLOO samples of the --bias_check reference (default 100).",
          dict(lower_bound=2)),
      "strategy": Flag("enum", "default", "tf.distribute strategy.",
                       dict(enum_values=list(training.STRATEGIES))),
      "tpu": Flag("string", None, "TPU address (--strategy=tpu only)."),
      "jit_compile": Flag("bool", True,
                          "XLA-compile training and evaluation."),
      "eval_every": Flag("integer", 10_000, "Evaluation cadence in steps.",
                         dict(lower_bound=1)),
      "checkpoint_every": Flag("integer", 10_000,
                               "Checkpoint cadence in steps.",
                               dict(lower_bound=1)),
      "log_every": Flag("integer", 1_000, "Progress-line cadence in steps.",
                        dict(lower_bound=1)),
      "data_dir": Flag(
          "string", None, "tfds data directory for prepared data (default "
          "$TF_DISCRETE_DATA_DIR or the tfds default)."),
      "manual_dir": Flag(
          "string", None,
          "Root of the raw data files (default $TF_DISCRETE_MANUAL_DIR)."),
  }
  for name, fields in overrides.items():
    specs[name] = dataclasses.replace(specs[name], **fields)
  return specs


def choice_flags(*, estimators: Sequence[str], aliases: Mapping[str, str],
                 grad_type: str, grad_type_help: str, encoder_type: str,
                 encoder_type_help: str) -> Dict[str, Flag]:
  """``--grad_type`` (an estimator name or an official alias) and
  ``--encoder_type`` (``linear`` / ``nonlinear``) of a binary."""
  return {
      "grad_type": Flag("enum", grad_type, grad_type_help,
                        dict(enum_values=sorted(list(estimators) +
                                                list(aliases)))),
      "encoder_type": Flag("enum", encoder_type, encoder_type_help,
                           dict(enum_values=list(vae.ENCODER_TYPES))),
  }


def model_options(values: Mapping[str, Any]) -> Dict[str, Any]:
  """The model configuration fields both binaries take from their flags."""
  return {k: values[k] for k in ("encoder_type", "demean_input",
                                 "initialize_with_bias", "decoder_grad")}


def default_flag_values(specs: Mapping[str, Flag]) -> Dict[str, Any]:
  """Every flag of ``specs`` at its default (a fresh copy)."""
  return {name: (list(spec.default) if isinstance(spec.default, list)
                 else spec.default) for name, spec in specs.items()}


def define_flags(specs: Mapping[str, Flag],
                 flag_values: flags.FlagValues = flags.FLAGS,
                 module_name: Optional[str] = None):
  """Defines ``specs`` in ``flag_values``.

  ``module_name``: the module the flags belong to in ``--helpshort``
  (default: this one).
  """
  for name, spec in specs.items():
    spec.define(name, flag_values, module_name)


def run_program(specs: Mapping[str, Flag],
                check_flags: Callable[[Mapping[str, Any]], Any],
                run: Callable[[Mapping[str, Any]], Dict[str, Any]]):
  """Defines the flags in ``flags.FLAGS`` and runs ``run`` as the program.

  Flags that ``check_flags`` rejects (ValueError/TypeError) end the program
  with the message, before anything is loaded.
  """
  # Owned by the program, so that --helpshort lists them.
  define_flags(specs, module_name=sys.argv[0])

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    values = {name: flags.FLAGS[name].value for name in specs}
    try:
      check_flags(values)
    except (ValueError, TypeError) as e:
      sys.exit(f"FATAL Flags that do not fit together: {e}\n"
               f"Pass --helpshort or --helpfull to see help on flags.")
    summary = run(values)
    logging.info("Summary: %s", {k: v for k, v in summary.items()
                                 if k != "flags"})

  app.run(main)


def check_common_flags(values: Mapping[str, Any]):
  """Raises ValueError for common flags that cannot apply together."""
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
  if values["dataset"] == SYNTHETIC:
    given = [f"--{k}" for k in ("data_dir", "manual_dir") if values[k]]
    if given:
      raise ValueError(f"{', '.join(given)} do not apply to --dataset="
                       f"{SYNTHETIC}.")


def synthetic_splits(seed: int = 0, num_train: int = 2000,
                     num_eval: int = 500, num_prototypes: int = 8,
                     data_dim: int = 784) -> datasets.Splits:
  """Grey-level images near a few random prototypes (dynamic binarization)."""
  rng = np.random.RandomState(seed)
  prototypes = rng.beta(0.3, 1.0, size=(num_prototypes, data_dim))

  def draw(n):
    images = prototypes[rng.randint(num_prototypes, size=n)]
    return np.clip(images + 0.05 * rng.randn(n, data_dim), 0, 1).astype(
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


def eval_sets(splits, num_eval_samples: int) -> Sequence[training.EvalSet]:
  """Train ELBO (fresh binarization), valid/test IWAE bounds (fixed)."""
  return [
      training.EvalSet("train_elbo", splits.train, 1, splits.dynamic),
      training.EvalSet("valid_iwae", splits.fixed_eval_set("valid"),
                       num_eval_samples),
      training.EvalSet("test_iwae", splits.fixed_eval_set("test"),
                       num_eval_samples),
  ]


def default_logdir(binary: str, values: Mapping[str, Any], estimator: str,
                   model: str) -> str:
  """``<root>/<binary>/<dataset>-<estimator>-<encoder_type>-<model>-seed<seed>``."""
  return os.path.join(
      DEFAULT_LOGDIR_ROOT, binary,
      f"{values['dataset']}-{estimator}-{values['encoder_type']}-{model}-"
      f"seed{values['seed']}")


def data_dim(splits) -> int:
  """Pixels per image of ``splits``."""
  return int(np.shape(splits.train)[1])


def make_trainer(values: Mapping[str, Any], splits,
                 model_fn: Callable[[Any], Any], *, logdir: str,
                 basket: Sequence[Tuple[str, Optional[int]]] = (),
                 run_config: Optional[Mapping[str, Any]] = None
                 ) -> training.Trainer:
  """The Trainer of a run (not started), from the common flags.

  Args:
    values: every flag of the binary, already validated.
    splits: data with the ``tf_discrete.datasets.Splits`` attributes;
      loaded from ``values`` when None.
    model_fn: ``splits -> model`` (called under the strategy's scope).
    logdir: the output folder to use when ``values["logdir"]`` is unset.
    basket: ``(estimator, num_samples)`` pairs of ``TrainConfig.basket``.
    run_config: entries of ``config.json`` / ``summary.json`` besides the
      flags (the resolved estimator, its cost, ...).
  """
  values = dict(values)
  values["logdir"] = values["logdir"] or logdir
  strategy = training.make_strategy(values["strategy"], values["tpu"])
  splits = splits if splits is not None else load_data(values)
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
      basket=tuple(basket), bias_check=bias_check)
  return training.Trainer(
      lambda: model_fn(splits), optimizer_fns(values), splits.train,
      eval_sets(splits, values["num_eval_samples"]), train_config,
      dynamic=splits.dynamic, strategy=strategy,
      run_config={**values, **(run_config or {})}, resumable_keys=RESUMABLE)
