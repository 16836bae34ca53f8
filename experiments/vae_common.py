"""What the VAE experiment binaries share: flags, data, trainer assembly.

``experiments.bernoulli_vae`` (Bernoulli latents) and
``experiments.categorical_vae`` (categorical latents) differ only in their
model and model flags. Everything else lives here once: the common flags
(declared as :class:`experiments.cli.Flag` specs), the tiny synthetic data set, data loading,
the optimizers, the evaluation sets, the default output folder and the
:class:`experiments.training.Trainer` of a run.

"""

import dataclasses
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging
import keras
import numpy as np

from experiments import cli
from experiments import training
from experiments.cli import Flag
from experiments.models import networks
from tf_discrete import datasets

# A tiny generated data set (grey-level images near a few prototypes) for
# smoke tests of an installation and for the test suites; not a benchmark.
SYNTHETIC = "synthetic"
# Flags that may change when a run is resumed from its logdir.
RESUMABLE = ("num_steps", "eval_every", "checkpoint_every", "log_every",
             "data_dir", "manual_dir", "strategy", "tpu", "jit_compile")
# Root of the default --logdir of every binary.
DEFAULT_LOGDIR_ROOT = "/tmp/tf_discrete"


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
          "enum", networks.ESTIMATOR_SAMPLES,
          "Decoder/prior gradient: pathwise gradient of the estimator's own "
          "evaluations (no extra pass), or of a separate forward sample "
          "(official protocol).", dict(enum_values=list(networks.DECODER_GRADS))),
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
          f"Gradients averaged by --bias_check (default "
          f"{training.BiasCheck.repeats}).",
          dict(lower_bound=1)),
      "bias_check_reference_samples": Flag(
          "integer", None,
          f"RLOO samples of the --bias_check reference (default "
          f"{training.BiasCheck.reference_num_samples}).",
          dict(lower_bound=2)),
      "temperature_decay": Flag(
          "float", None,
          "Anneal the estimator's --temperature: tau_t = max("
          "--min_temperature, tau_0 exp(-rate t)) with this rate per step "
          "(the Gumbel-softmax paper uses 1e-5 or 1e-4). Unset: constant.",
          dict(lower_bound=0.0)),
      "min_temperature": Flag(
          "float", None,
          "Floor of the annealed temperature (needs --temperature_decay; "
          "default 0.5, or the initial temperature if lower).",
          dict(lower_bound=0.0)),
      "control_variate_lr": Flag(
          "float", None,
          "Adam learning rate (beta_1 = 0.999) of the learned control-"
          "variate parameters, for estimators that have them. Unset: "
          "--infnet_lr."),
      "strategy": Flag(
          "enum", "default",
          "tf.distribute strategy: default (none), mirrored (all GPUs, else "
          "all logical CPUs), multi_worker (MultiWorkerMirroredStrategy over "
          "the cluster of $TF_CONFIG; the chief writes the logdir, which all "
          "workers must see) or tpu.",
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
                           dict(enum_values=list(networks.ENCODER_TYPES))),
  }


def _options_by_name(family) -> Dict[str, List[Tuple[str, Any]]]:
  """Option name -> [(estimator, Option)] over the family's registry."""
  found: Dict[str, List[Tuple[str, Any]]] = {}
  for name, est in family.REGISTRY.items():
    for option in est.facts.options:
      found.setdefault(option.name, []).append((name, option))
  return found


def _flag_kind(option) -> Tuple[str, Dict[str, Any]]:
  """The absl flag type of an estimator option, from its declared values."""
  accepted = [a for a in (option.accepted or ()) if a is not None]
  if accepted and all(isinstance(a, bool) for a in accepted):
    return "bool", {}
  if accepted and all(isinstance(a, str) for a in accepted):
    return "enum", dict(enum_values=accepted)
  if isinstance(option.default, bool):
    return "bool", {}
  if isinstance(option.default, int):
    return "integer", {}
  if isinstance(option.default, float):
    return "float", {}
  return "string", {}


def option_flags(family) -> Dict[str, Flag]:
  """One flag per estimator option the family's estimators declare.

  Unset (None), an option takes its estimator's default; set, it must be
  an option of the run's estimator (:func:`estimator_options`).
  """
  specs = {}
  for option_name, users in sorted(_options_by_name(family).items()):
    names = ", ".join(name for name, _ in users)
    kind, extra = _flag_kind(users[0][1])
    specs[option_name] = Flag(
        kind, None, f"Estimator option of {names}: {users[0][1].doc}. Unset: "
        f"the estimator's default.", extra)
  return specs


def estimator_options(values: Mapping[str, Any], family,
                      estimator: str) -> Dict[str, Any]:
  """The option flags that are set, checked against ``estimator``'s facts.

  Raises:
    ValueError: an option flag set for an estimator that does not declare
      it (the message names the estimators that do), or a value the
      estimator does not accept.
  """
  est = family.get(estimator)
  given = {}
  for option_name, users in sorted(_options_by_name(family).items()):
    if values.get(option_name) is None:
      continue
    if option_name not in est.facts.option_names:
      raise ValueError(
          f"--{option_name} applies to "
          f"{', '.join(name for name, _ in users)} only, not to "
          f"'{estimator}'.")
    given[option_name] = values[option_name]
  try:
    est.resolve_options(given)
  except TypeError as e:
    raise ValueError(str(e)) from None
  return given


def model_options(values: Mapping[str, Any]) -> Dict[str, Any]:
  """The model configuration fields both binaries take from their flags."""
  return {k: values[k] for k in ("encoder_type", "demean_input",
                                 "initialize_with_bias", "decoder_grad",
                                 "temperature_decay", "min_temperature")}


def check_common_flags(values: Mapping[str, Any], estimator):
  """Raises ValueError for common flags that cannot apply together, or not
  to ``estimator`` (the run's registered estimator object)."""
  if (values["control_variate_lr"] is not None
      and not estimator.facts.trainable_state):
    raise ValueError(
        f"--control_variate_lr applies to estimators with learned control "
        f"variates; '{estimator.name}' has none.")
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


def check_data_flags(values: Mapping[str, Any], splits, replicas: int):
  """Raises :class:`experiments.cli.FlagsError` for flags that do not fit
  the data or the strategy (checked once both are known)."""
  num_train = int(np.shape(splits.train)[0])
  if values["batch_size"] > num_train:
    raise cli.FlagsError(
        f"--batch_size={values['batch_size']} exceeds the {num_train} "
        f"training images of --dataset={values['dataset']}.")
  if values["batch_size"] % replicas:
    raise cli.FlagsError(
        f"--batch_size={values['batch_size']} must be divisible by the "
        f"{replicas} replicas of --strategy={values['strategy']}.")


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
  """The splits of ``--dataset``.

  Raises:
    tf_discrete.datasets.DatasetNotFoundError: raw files missing (a
      FileNotFoundError; a user error for ``cli.run_program``).
    tf_discrete.datasets.CorruptDatasetError: a raw or prepared file that
      cannot be read (a ValueError; a user error too).
  """
  if values["dataset"] == SYNTHETIC:
    return synthetic_splits(values["seed"])
  with cli.quiet_library_logs():
    return datasets.load(values["dataset"], manual_dir=values["manual_dir"],
                         data_dir=values["data_dir"],
                         progress=logging.level_info())


def optimizer_fns(values: Mapping[str, Any], control_variate: bool = False):
  """Encoder Adam(infnet_lr), decoder Adam(genmo_lr), prior SGD(prior_lr);
  with ``control_variate``, the estimator's control-variate parameters
  Adam(control_variate_lr or infnet_lr, beta_1=0.999), as RELAX trains its
  control variate."""
  fns = {
      "encoder": lambda: keras.optimizers.Adam(values["infnet_lr"]),
      "decoder": lambda: keras.optimizers.Adam(values["genmo_lr"]),
      "prior": lambda: keras.optimizers.SGD(values["prior_lr"]),
  }
  if control_variate:
    fns["control_variate"] = lambda: keras.optimizers.Adam(
        values["control_variate_lr"] or values["infnet_lr"], beta_1=0.999)
  return fns


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
                 run_config: Optional[Mapping[str, Any]] = None,
                 control_variate: bool = False) -> training.Trainer:
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
    control_variate: the model has the parameter group ``control_variate``
      (an estimator with learned control variates).
  """
  values = dict(values)
  values["logdir"] = values["logdir"] or logdir
  strategy = training.make_strategy(values["strategy"], values["tpu"])
  splits = splits if splits is not None else load_data(values)
  check_data_flags(values, splits, strategy.num_replicas_in_sync)
  bias_check = None
  if values["bias_check"]:
    # Unset flags take the BiasCheck defaults; the reference averages a
    # tenth as many gradients (each of many samples).
    repeats = (values["bias_check_repeats"] or
               training.BiasCheck.repeats)
    reference_samples = (values["bias_check_reference_samples"] or
                         training.BiasCheck.reference_num_samples)
    bias_check = training.BiasCheck(
        images=splits.fixed_eval_set("valid")[:values["batch_size"]],
        reference_num_samples=reference_samples,
        repeats=repeats, reference_repeats=max(1, repeats // 10))
  train_config = training.TrainConfig(
      logdir=values["logdir"], num_steps=values["num_steps"],
      batch_size=values["batch_size"], seed=values["seed"],
      eval_every=values["eval_every"],
      checkpoint_every=values["checkpoint_every"],
      log_every=values["log_every"], jit_compile=values["jit_compile"],
      basket=tuple(basket), bias_check=bias_check)
  return training.Trainer(
      lambda: model_fn(splits), optimizer_fns(values, control_variate),
      splits.train,
      eval_sets(splits, values["num_eval_samples"]), train_config,
      dynamic=splits.dynamic, strategy=strategy,
      run_config={**values, **(run_config or {})}, resumable_keys=RESUMABLE)
