r"""Trains a Bernoulli VAE with a chosen gradient estimator (DisARM protocol).

The official DisARM launcher's README command runs with only the module name
changed:

    python -m experiments.bernoulli_vae --dataset=dynamic_mnist \
      --grad_type=disarm --encoder_type=nonlinear --num_steps=1000000 \
      --demean_input --initialize_with_bias

Outputs in --logdir: metrics.jsonl + TensorBoard events (every
--eval_every steps: train ELBO, valid/test IWAE bounds, encoder gradient
variance), checkpoints/ (a rerun with the same flags resumes), and at the
end summary.json and curves.png. See docs/experiments.md.

Flags that cannot apply to the chosen configuration are usage errors,
reported before any data is loaded. The flags are defined when this module
runs as the program, not on import (see ``experiments.vae_common``), so it
shares a process with ``experiments.categorical_vae``; programmatic runs
pass a dict: ``run(values)`` or ``build_trainer(values)`` with ``values =
default_flag_values()`` updated.
"""

import dataclasses
from typing import Any, Dict, Mapping

from absl import logging

from experiments import cli
from experiments import training
from experiments import vae_common
from experiments.models import bernoulli as bernoulli_model
from experiments.cli import Flag
from tf_discrete import bernoulli

# Spellings of the official launcher.
GRAD_TYPE_ALIASES = {"reinforce_loo": "rloo", "local-disarm": "local_disarm"}

#: Every flag of the binary: the common ones, then the model's.
FLAG_SPECS: Dict[str, Flag] = {
    **vae_common.common_flags(
        logdir=dict(help=(
            "Output folder (default: /tmp/tf_discrete/bernoulli_vae/<dataset>-"
            "<grad_type>-<encoder_type>-L<num_layers>-seed<seed>). An "
            "existing run there is resumed.")),
        demean_input=dict(help=(
            "Subtract the training mean at the encoder input; feed 2b-1 to "
            "the data decoder."))),
    **vae_common.choice_flags(
        estimators=bernoulli.available(), aliases=GRAD_TYPE_ALIASES,
        grad_type="disarm",
        grad_type_help=(
            "Gradient estimator (tf_discrete.bernoulli.available(); also "
            "the official spellings reinforce_loo, local-disarm)."),
        encoder_type="linear",
        encoder_type_help=(
            "linear: x->Dense(200); nonlinear: 784-200-200-200 with "
            "LeakyReLU(0.3); decoders mirror the encoder.")),
    "num_pairs": Flag(
        "integer", None,
        "Objective evaluations per stochastic layer = 2*num_pairs: vimco "
        "uses K=2*num_pairs samples, local_disarm/disarm/arm num_pairs "
        "pairs, rloo/reinforce/ar 2*num_pairs samples. Unset: each "
        "estimator's default (2 evaluations; 1 for reinforce and ar).",
        dict(lower_bound=1)),
    "num_samples": Flag(
        "integer", None,
        "Objective evaluations per stochastic layer, counted directly (e.g. "
        "3 for rloo, double_cv, rodeo, rebar, relax with K = 3); an "
        "alternative to --num_pairs, which counts pairs. Unset: "
        "--num_pairs, else each estimator's default.",
        dict(lower_bound=1)),
    "shared_randomness": Flag(
        "bool", False,
        "Multi-layer: re-sample the layers below an estimated layer with "
        "the same per-layer uniforms in every branch."),
    "estimate_grad_basket": Flag(
        "bool", False,
        "Also track the encoder gradient variance of the other estimators "
        "of the same bound and cost on the training batches (computed, not "
        "applied)."),
    "num_layers": Flag(
        "integer", 1, "Stochastic layers of 200 units.",
        dict(lower_bound=1, upper_bound=bernoulli_model.MAX_LAYERS)),
    **vae_common.option_flags(bernoulli),
}
FLAG_NAMES = tuple(FLAG_SPECS)


def default_flag_values() -> Dict[str, Any]:
  """The binary's flags at their defaults (for programmatic runs)."""
  return cli.default_flag_values(FLAG_SPECS)


def vae_config(values: Mapping[str, Any]) -> bernoulli_model.BernoulliVAEConfig:
  """The model configuration; raises ValueError for inapplicable flags."""
  num_pairs, num_samples = values["num_pairs"], values["num_samples"]
  if num_pairs is not None and num_samples is not None:
    raise ValueError("--num_pairs and --num_samples both set the number of "
                     "objective evaluations; give one.")
  if num_pairs is not None:
    num_samples = 2 * num_pairs
  name = GRAD_TYPE_ALIASES.get(values["grad_type"], values["grad_type"])
  return bernoulli_model.BernoulliVAEConfig(
      estimator=name,
      num_samples=num_samples,
      estimator_options=vae_common.estimator_options(values, bernoulli, name),
      num_layers=values["num_layers"],
      shared_randomness=values["shared_randomness"],
      **vae_common.model_options(values))


def check_flags(values: Mapping[str, Any]) -> bernoulli_model.BernoulliVAEConfig:
  """Validates the flags together; returns the model configuration.

  Raises:
    ValueError: a flag that cannot apply to the configuration.
  """
  config = vae_config(values)
  vae_common.check_common_flags(values, bernoulli.get(config.estimator))
  if values["bias_check"] and bernoulli_model.estimates_bound(config.estimator):
    raise ValueError(
        f"--bias_check compares with an RLOO reference of the ELBO gradient; "
        f"'{config.estimator}' estimates the gradient of a multi-sample bound, "
        f"for which no reference is implemented.")
  if values["estimate_grad_basket"] and not bernoulli_model.gradient_basket(config)[0]:
    raise ValueError(
        f"--estimate_grad_basket: no other estimator is comparable with "
        f"'{config.estimator}' at {config.evaluations} evaluations "
        f"({bernoulli_model.gradient_basket(config)[1]}).")
  return config


def default_logdir(values: Mapping[str, Any]) -> str:
  return vae_common.default_logdir("bernoulli_vae", values, values["grad_type"],
                                   f"L{values['num_layers']}")


def build_trainer(values: Mapping[str, Any],
                  splits=None) -> training.Trainer:
  """The :class:`~experiments.training.Trainer` of a run, not started.

  The exact code path of :func:`run` (``run = build_trainer(...).run()``).

  Args:
    values: every flag of this binary (see :func:`default_flag_values`).
    splits: data with the ``tf_discrete.datasets.Splits`` attributes (any
      number of pixels); loaded from ``values`` when None.

  Raises:
    ValueError: flags that cannot apply together (before any data is
      loaded).
  """
  config = check_flags(values)
  basket = ()
  if values["estimate_grad_basket"]:
    names, excluded = bernoulli_model.gradient_basket(config)
    for name, reason in excluded.items():
      logging.warning("Gradient basket: %s excluded: %s", name, reason)
    basket = tuple((name, config.evaluations) for name in names)
  logging.info("Model: %s", config)
  return vae_common.make_trainer(
      values, splits,
      lambda splits: bernoulli_model.BernoulliVAE(
          dataclasses.replace(config, data_dim=vae_common.data_dim(splits)),
          splits.train_mean, seed=values["seed"]),
      logdir=default_logdir(values), basket=basket,
      run_config={"estimator": config.estimator,
                  "evaluations_per_layer": config.evaluations},
      control_variate=bernoulli.get(config.estimator).facts.trainable_state)


def run(values: Mapping[str, Any], splits=None) -> Dict[str, Any]:
  """Trains with the given flag values; returns the summary.

  Args:
    values: every flag of this binary (see :func:`default_flag_values`).
    splits: data with the ``tf_discrete.datasets.Splits`` attributes; loaded
      from ``values`` when None.
  """
  return build_trainer(values, splits).run()


if __name__ == "__main__":
  cli.run_program(FLAG_SPECS, run, check_flags)
