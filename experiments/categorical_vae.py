r"""Trains a categorical VAE with a chosen gradient estimator.

The categorical counterpart of ``experiments.bernoulli_vae``: same data, same
training loop (:class:`experiments.training.Trainer`), same metrics,
checkpoints, strategies and outputs, all assembled by
``experiments.vae_common``; only the model
(:mod:`experiments.models.categorical`) and the model flags differ. Paper
protocol (dynamic MNIST, V=20 variables of C=10 categories):

    python -m experiments.categorical_vae --dataset=dynamic_mnist \
      --grad_type=disarm_sb --encoder_type=nonlinear --num_variables=20 \
      --num_categories=10 --one_hot --demean_input --initialize_with_bias

Flags follow the official coupled-estimators (DisARM categorical) launcher,
whose README command runs with only the module name changed:

    python -m experiments.categorical_vae --dataset=dynamic_mnist \
      --encoder_type=nonlinear --num_steps=1000000 --demean_input \
      --initialize_with_bias --grad_type=disarm --num_variables=32 \
      --num_categories=16 --batch_size=200 --one_hot --stick_breaking \
      --importance_weight --logits_order=ascending

Outputs in --logdir: metrics.jsonl + TensorBoard events (every
--eval_every steps: train ELBO, valid/test IWAE bounds, encoder gradient
variance), checkpoints/ (a rerun with the same flags resumes), and at the
end summary.json and curves.png. See docs/experiments.md.

Flags that cannot apply to the chosen configuration are errors, reported
before any data is loaded. The flags are defined when this module runs as
the program, not on import, so it shares a process with
``experiments.bernoulli_vae``; programmatic runs pass a dict: ``run(values)``
or ``build_trainer(values)`` with ``values = default_flag_values()``
updated.
"""

import dataclasses
from typing import Any, Dict, Mapping

from absl import logging

from experiments import cli
from experiments import training
from experiments import vae_common
from experiments.models import categorical as categorical_model
from experiments.models import networks
from experiments.cli import Flag
from tf_discrete import categorical

# Spellings of the official launcher. Its `arsp` is ARS with pi_j replaced
# by the mid-point of its consistent interval and `arsmp` is ARSM with the
# symmetry mask; our ars_plus/arsm_plus do both (same draws and cost).
GRAD_TYPE_ALIASES = {
    "reinforce_loo": "rloo",
    "arsp": "ars_plus",
    "arsmp": "arsm_plus",
    "disarm": "disarm_sb",
}
# The official launcher's switches on --grad_type=disarm, and the estimator
# each selects.
DISARM_SWITCHES = {"tree_structure": "disarm_tree",
                   "importance_weight": "disarm_iw"}
# What the official --grad_type=disarm can mean: the estimators on the
# binary (stick-breaking or tree) representation, where the official
# --stick_breaking switch is accepted.
STICK_BREAKING_ESTIMATORS = (GRAD_TYPE_ALIASES["disarm"],
                             *DISARM_SWITCHES.values())
# --estimate_grad_basket entry: every estimator that runs at the run's cost.
SAME_COST = "same_cost"
#: Every flag of the binary: the common ones (official categorical
#: defaults: batch 200; the separate-sample decoder gradient, see
#: docs/experiments.md), then the model's. Differences from the official launcher's
#: defaults: dataset dynamic_mnist (the papers' set; official
#: static_mnist), seed 0 (official 1).
FLAG_SPECS: Dict[str, Flag] = {
    **vae_common.common_flags(
        batch_size=dict(default=200),
        prior_lr=dict(
            help=("SGD learning rate of the prior logits (trainable, "
                  "initialized to 0 = uniform; 0 keeps the prior uniform)."),
            options=dict(lower_bound=0.0)),
        decoder_grad=dict(default=networks.SEPARATE_SAMPLE, help=(
            "Decoder/prior gradient: pathwise gradient of the ELBO of one "
            "separate sample (official protocol; the same for every "
            "estimator, whatever its cost), or of the estimator's own "
            "evaluations (no extra pass, but backprop through all of them: "
            "46 for ARSM at C=10).")),
        demean_input=dict(help=(
            "Subtract the training mean at the encoder input; feed 2s-1 to "
            "the decoder (s: the one-hot or index vector).")),
        logdir=dict(help=(
            "Output folder (default: /tmp/tf_discrete/categorical_vae/"
            "<dataset>-<estimator>-<encoder_type>-<V>x<C>-seed<seed>). An "
            "existing run there is resumed."))),
    **vae_common.choice_flags(
        estimators=categorical.available(), aliases=GRAD_TYPE_ALIASES,
        grad_type="rloo",
        grad_type_help=(
            "Gradient estimator: a name of "
            "tf_discrete.categorical.available(), or an official spelling: "
            "reinforce_loo (rloo), arsp (ars_plus), arsmp (arsm_plus), "
            "disarm (disarm_sb; disarm_iw with --importance_weight, "
            "disarm_tree with --tree_structure)."),
        encoder_type="nonlinear",
        encoder_type_help=(
            "nonlinear: 784-512-256-V*C with LeakyReLU(0.2), decoder "
            "mirrored; linear: one dense layer each way.")),
    "num_variables": Flag("integer", 20, "V, categorical latent variables.",
                          dict(lower_bound=1)),
    "num_categories": Flag("integer", 10, "C, categories per variable.",
                           dict(lower_bound=2)),
    "num_samples": Flag(
        "integer", None,
        "Objective evaluations per estimate for the estimators with a "
        "choice: K samples for rloo/reinforce/ar, 2 x pairs for disarm_*. "
        "Unset: the estimator's default (rloo: C; disarm_*: 2; reinforce/"
        "ar: 1). An error for the fixed-cost ars, ars_plus (C) and arsm, "
        "arsm_plus (C(C-1)/2+1).", dict(lower_bound=1)),
    "one_hot": Flag(
        "bool", False,
        "Decoder input: the one-hot samples (V*C inputs). Off: the category "
        "indices 0..C-1 as V real inputs (the official default)."),
    "stick_breaking": Flag(
        "bool", False,
        "Official spelling, accepted with the coupled estimators (disarm, "
        "disarm_sb, disarm_iw, disarm_tree), which always use their binary "
        "representation; an error with any other --grad_type."),
    "tree_structure": Flag(
        "bool", False,
        "Official spelling: with --grad_type=disarm, selects disarm_tree."),
    "importance_weight": Flag(
        "bool", False,
        "Official spelling: with --grad_type=disarm, selects disarm_iw."),
    **vae_common.option_flags(categorical),
    "estimate_grad_basket": Flag(
        "list", [],
        "Other estimators whose encoder gradient variance is tracked on the "
        "training batches (computed, not applied), as name or name:K (K "
        "objective evaluations). A bare name runs at the run's own "
        "evaluation count, or at its fixed cost. 'same_cost': every "
        "estimator that can run at exactly the run's cost."),
}
FLAG_NAMES = tuple(FLAG_SPECS)


def default_flag_values() -> Dict[str, Any]:
  """The binary's flags at their defaults (for programmatic runs)."""
  return cli.default_flag_values(FLAG_SPECS)


def estimator_name(values: Mapping[str, Any]) -> str:
  """The library estimator named by --grad_type and the official switches."""
  grad_type = values["grad_type"]
  switches = [k for k in DISARM_SWITCHES if values[k]]
  if switches:
    given = " and ".join(f"--{k}" for k in switches)
    if grad_type != "disarm":
      raise ValueError(
          f"{given} select a variant of the official --grad_type=disarm; "
          f"with --grad_type={grad_type} use "
          f"{' or '.join(f'--grad_type={v}' for v in DISARM_SWITCHES.values())}"
          f" directly.")
    if len(switches) > 1:
      raise ValueError(f"{given} exclude each other "
                       f"({' or '.join(DISARM_SWITCHES.values())}).")
    return DISARM_SWITCHES[switches[0]]
  name = GRAD_TYPE_ALIASES.get(grad_type, grad_type)
  if values["stick_breaking"] and name not in STICK_BREAKING_ESTIMATORS:
    raise ValueError(
        f"--stick_breaking applies to the coupled estimators (disarm, "
        f"{', '.join(STICK_BREAKING_ESTIMATORS)}), not to "
        f"--grad_type={grad_type}; a stick-breaking score function for "
        f"'{name}' is not implemented.")
  return name


def model_config(values: Mapping[str, Any]
                 ) -> categorical_model.CategoricalVAEConfig:
  """The model configuration; raises ValueError for inapplicable flags."""
  name = estimator_name(values)
  est = categorical.get(name)
  if values["num_samples"] is not None and est.facts.cost.fixed:
    cost = est.evaluations(
        None, [values["num_variables"], values["num_categories"]])
    raise ValueError(
        f"--num_samples does not apply to --grad_type={values['grad_type']} "
        f"('{name}'): its cost is fixed at {cost} objective evaluations for "
        f"C={values['num_categories']}.")
  return categorical_model.CategoricalVAEConfig(
      estimator=name,
      num_samples=values["num_samples"],
      estimator_options=vae_common.estimator_options(values, categorical,
                                                     name),
      num_variables=values["num_variables"],
      num_categories=values["num_categories"],
      one_hot=values["one_hot"],
      **vae_common.model_options(values))


def basket(values: Mapping[str, Any], config=None):
  """``(name, num_samples)`` pairs of --estimate_grad_basket; excluded."""
  config = config or model_config(values)
  entries = list(values["estimate_grad_basket"] or [])
  if not entries:
    return (), {}
  if SAME_COST in entries:
    if len(entries) > 1:
      raise ValueError(f"--estimate_grad_basket={SAME_COST} stands alone, "
                       f"got {entries}.")
    pairs, excluded = categorical_model.gradient_basket(config)
    if not pairs:
      raise ValueError(
          f"--estimate_grad_basket={SAME_COST}: no other estimator runs at "
          f"exactly {config.evaluations} objective evaluations ({excluded}).")
    return tuple(pairs), excluded
  names = []
  for entry in entries:
    name, sep, count = entry.partition(":")
    names.append(GRAD_TYPE_ALIASES.get(name, name) + sep + count)
  pairs, excluded = categorical_model.gradient_basket(config, names)
  return tuple(pairs), excluded


def check_flags(values: Mapping[str, Any]
                ) -> categorical_model.CategoricalVAEConfig:
  """Validates the flags together; returns the model configuration.

  Raises:
    ValueError: a flag that cannot apply to the configuration.
  """
  config = model_config(values)
  vae_common.check_common_flags(values, categorical.get(config.estimator))
  basket(values, config)
  return config


def default_logdir(values: Mapping[str, Any]) -> str:
  return vae_common.default_logdir(
      "categorical_vae", values, estimator_name(values),
      f"{values['num_variables']}x{values['num_categories']}")


def build_trainer(values: Mapping[str, Any],
                  splits=None) -> training.Trainer:
  """The Trainer that :func:`run` starts; flag errors before any loading.

  Same contract as ``experiments.bernoulli_vae.build_trainer``: ``values`` are
  every flag of this binary (:func:`default_flag_values` updated),
  ``splits`` optional data (any number of pixels).
  """
  config = check_flags(values)
  pairs, excluded = basket(values, config)
  for name, reason in excluded.items():
    logging.info("Gradient basket: %s excluded: %s", name, reason)
  logging.info("Model: %s (%d objective evaluations per estimate)", config,
               config.evaluations)
  return vae_common.make_trainer(
      values, splits,
      lambda splits: categorical_model.CategoricalVAE(
          dataclasses.replace(config, data_dim=vae_common.data_dim(splits)),
          splits.train_mean, seed=values["seed"]),
      logdir=default_logdir(values), basket=pairs,
      run_config={"estimator": config.estimator,
                  "evaluations": config.evaluations,
                  "basket": [list(p) for p in pairs]},
      control_variate=categorical.get(config.estimator).facts.trainable_state)


def run(values: Mapping[str, Any], splits=None) -> Dict[str, Any]:
  """Trains (``build_trainer(values, splits).run()``); returns the summary."""
  return build_trainer(values, splits).run()


if __name__ == "__main__":
  cli.run_program(FLAG_SPECS, run, check_flags)
