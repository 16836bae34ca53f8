r"""What the study runs: its tables, variants, claims and reference numbers.

The study trains VAEs with the project's own binaries, one subprocess per
run, and compares the estimators the DisARM and coupled-estimators papers
compare. Its tables (:data:`GROUPS`):

1. ``binary``: DisARM vs ARM vs RLOO (2 objective evaluations each), one
   stochastic layer of 200 Bernoulli units, dynamic MNIST, Fashion-MNIST and
   Omniglot, linear and nonlinear networks, official flags
   (``--demean_input --initialize_with_bias``).
2. ``multilayer``: DisARM vs RLOO with 2 and 4 linear stochastic layers on
   dynamic MNIST.
3. ``multisample``: local DisARM with P pairs vs VIMCO with K = 2P samples
   (2P evaluations each) on dynamic MNIST, nonlinear.
4. ``categorical``: V=20 variables of C=10 categories on dynamic MNIST:
   RLOO (K = C), RLOO (K = 2), ARSM, ARSM+, stick-breaking DisARM.
5. ``paper``: the papers' length, 1,000,000 steps: nonlinear DisARM on the
   three data sets, RLOO (K = 2) and ARM on dynamic MNIST, beside the DisARM
   paper's numbers.

A run is a variant (:data:`STUDY`) on one data set with one seed; its logdir
is ``<root>/<group>/<dataset>-<setting>-<arm>-seed<seed>``. This module
imports neither TensorFlow nor the binaries.
"""

import dataclasses
import fnmatch
import os
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BERNOULLI = "experiments.bernoulli_vae"
CATEGORICAL = "experiments.categorical_vae"

OFFICIAL = {"demean_input": True, "initialize_with_bias": True}
CATEGORICAL_20X10 = dict(encoder_type="nonlinear", num_variables=20,
                         num_categories=10, one_hot=True, batch_size=200,
                         **OFFICIAL)
# The RODEO paper's launcher settings (dynamically binarized MNIST and
# Omniglot; its Fashion-MNIST runs use learning rates 3e-4).
RODEO_PROTOCOL = dict(encoder_type="nonlinear", batch_size=100,
                      infnet_lr=1e-3, genmo_lr=1e-3, prior_lr=0.0)
# ... and its control-variate learning rate, for the estimators that learn one.
RODEO_CONTROL = dict(control_variate_lr=1e-3)
# Pairs of the multi-sample comparison: local DisARM with P pairs (a P-sample
# bound, 2P evaluations) vs VIMCO with K = 2P samples (2P evaluations).
MULTISAMPLE_PAIRS = (1, 5)


# Curves of the figures: (metrics.jsonl key, axis label, log scale).
TRAIN_ELBO_CURVE = ("train_elbo", "train ELBO (nats)", False)
TEST_BOUND_CURVE = ("test_iwae", "test 100-sample bound (nats)", False)
VARIANCE_CURVE = ("grad_variance", "encoder gradient variance", True)


@dataclasses.dataclass(frozen=True)
class Group:
  """A table of the report: runs compared on the same data and schedule."""
  name: str
  title: str
  datasets: Tuple[str, ...]
  default_steps: int
  eval_every: int
  description: str
  seeds: Tuple[int, ...] = (0, 1, 2)
  # Curves drawn per setting: (metrics.jsonl key, axis label, log scale).
  curves: Tuple[Tuple[str, str, bool], ...] = (TRAIN_ELBO_CURVE,
                                               VARIANCE_CURVE)
  # Columns this table adds to the common ones, before the gradient
  # variance: (metrics.jsonl key, column title).
  extra_metrics: Tuple[Tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Variant:
  """One configuration of the study (run once per data set and seed).

  ``setting`` names what the arms of a comparison share (the network, the
  number of layers, the number of pairs); ``arm`` names the estimator
  configuration compared within a setting.
  """
  group: str
  setting: str
  arm: str
  label: str
  module: str
  flags: Mapping[str, Any]
  # Data sets of this variant when not all of its group's.
  datasets: Optional[Tuple[str, ...]] = None
  # This variant trains (and evaluates) its group's steps divided by this
  # (the categorical arms of mixed tables: half the Bernoulli steps).
  steps_divisor: int = 1


# The binaries' bias check (``--bias_check``): the relative error of the
# mean encoder gradient against a many-sample RLOO reference, and the error
# that Monte Carlo noise alone would give.
BIAS_METRIC = "bias_check/relative_error"
BIAS_NOISE_METRIC = "bias_check/relative_noise"

# The registry's default temperatures, which the relaxation runs use (a test
# checks this against the registry; the driver imports no TensorFlow).
RELAXATION_TEMPERATURES = (
    "τ = 0.5 for Gumbel-softmax (the floor of the annealing schedule of Jang "
    "et al.), τ = 1 for ST Gumbel-softmax (the start of that schedule, the "
    "usual straight-through setting), τ = 1 with 10 conditional draws for "
    "Gumbel-Rao (the smallest K of Paulus et al.'s experiments), τ = 1 for "
    "ReinMax (Liu et al.'s setting)")
DEFAULT_TEMPERATURES = {"gumbel_softmax": 0.5, "st_gumbel_softmax": 1.0,
                        "gumbel_rao": 1.0, "reinmax": 1.0}

GROUPS = (
    Group("binary",
          "Binary VAE, one stochastic layer: DisARM vs ARM vs RLOO",
          ("dynamic_mnist", "fashion_mnist", "omniglot"), 100_000, 10_000,
          "200 Bernoulli latents, batch 50, official flags "
          "(`--demean_input --initialize_with_bias`); every estimator uses 2 "
          "objective evaluations per step (DisARM and ARM: one antithetic "
          "pair; RLOO: K = 2 samples). Decoder and prior are trained on "
          "those same samples (the binary's default "
          "`--decoder_grad=estimator_samples`, the same for every "
          "estimator); the papers' code uses a separate third sample."),
    Group("multilayer",
          "Multi-layer binary VAE: DisARM vs RLOO, 2 and 4 stochastic layers",
          ("dynamic_mnist",), 100_000, 10_000,
          "Stochastic layers of 200 Bernoulli units linked by linear maps "
          "(`--encoder_type=linear --num_layers=L`), batch 50, official "
          "flags; 2 evaluations per layer for both estimators (one pair, or "
          "K = 2 RLOO samples), layers estimated one at a time. Decoder and "
          "prior gradients from the estimators' samples (the binary's "
          "default), as in table 1."),
    Group("multisample",
          "Multi-sample bound: local DisARM vs VIMCO at equal evaluations",
          ("dynamic_mnist",), 100_000, 10_000,
          "Nonlinear network, one stochastic layer, batch 50, official "
          "flags. Equal evaluations: `--num_pairs=P` for both, i.e. local "
          "DisARM with P antithetic pairs (training the P-sample bound over "
          "the first members, 2P evaluations) against VIMCO with K = 2P "
          "independent samples (training the 2P-sample bound, 2P "
          "evaluations). The two train different bounds, so the common "
          "yardstick of the claim is the test 100-sample bound. Decoder and "
          "prior are trained on the same multi-sample bound (as in the "
          "papers' code).",
          curves=(TEST_BOUND_CURVE,
                  ("train_objective", "training multi-sample bound (nats)",
                   False),
                  VARIANCE_CURVE),
          extra_metrics=(("train_objective", "training bound (own K)"),)),
    Group("categorical",
          "Categorical VAE, 20 variables x 10 categories: RLOO, ARSM, ARSM+, "
          "DisARM-SB",
          ("dynamic_mnist",), 50_000, 5_000,
          "`experiments.categorical_vae`, nonlinear networks "
          "(784-512-256-200), one-hot decoder input, batch 200, official "
          "flags, decoder trained on a separate sample (the binary's "
          "default, the same for every estimator). Evaluations per step: "
          "RLOO K = C = 10 (its default) and K = 2, ARSM and ARSM+ 46 "
          "(distinct pseudo-actions), stick-breaking DisARM 2.",
          seeds=(0,)),
    Group("paper",
          "The papers' length: 1,000,000 steps, nonlinear, one stochastic "
          "layer",
          ("dynamic_mnist", "fashion_mnist", "omniglot"), 1_000_000, 25_000,
          "The official DisARM README command, unchanged but for the module "
          "name, run to the papers' 1,000,000 steps: nonlinear DisARM on all "
          "three data sets, RLOO (K = 2) and ARM on dynamic MNIST, and on dynamic "
          "MNIST DisARM with the decoder and prior trained on a separate "
          "sample as the papers' code does (`--decoder_grad=separate_sample`: "
          "the ablation of the first protocol difference below). Batch 50, "
          "`--demean_input --initialize_with_bias`, decoder and prior "
          "trained on the estimator's samples.",
          seeds=(0,),
          curves=(TRAIN_ELBO_CURVE, TEST_BOUND_CURVE, VARIANCE_CURVE)),
    Group("relaxation",
          "Relaxations and straight-through beside DisARM and RLOO",
          ("dynamic_mnist",), 100_000, 10_000,
          "One stochastic layer. Bernoulli: 200 latents, nonlinear, batch "
          "50, official flags, 100,000 steps. Categorical: 20 x 10, "
          "nonlinear, one-hot decoder input, batch 200, official flags, "
          "50,000 steps (half of `--steps_relaxation`); every arm trains "
          "the decoder on the estimator's own samples "
          "(`--decoder_grad=estimator_samples`: the relaxed estimators need "
          "the objective's gradient in the samples). The relaxed and straight-"
          "through estimators use one objective evaluation and each "
          "estimator's declared default temperature, constant (no "
          "annealing): " + RELAXATION_TEMPERATURES + "; every run measures "
          "the bias of its encoder gradient with the binaries' bias check (`--bias_check`: the mean of 1,000 "
          "gradients against an RLOO reference with 100 samples on a fixed "
          "batch, at every evaluation; the table gives its relative error "
          "|mean − reference| / |reference| and the level that Monte Carlo "
          "noise alone would give, so a bias shows as an error well above "
          "that level). Evaluation always uses hard samples.",
          seeds=(0,),
          curves=(TRAIN_ELBO_CURVE, VARIANCE_CURVE,
                  (BIAS_METRIC, "relative error of the mean encoder gradient",
                   True)),
          extra_metrics=((BIAS_METRIC, "encoder-gradient bias (relative)"),
                         (BIAS_NOISE_METRIC, "noise level of the bias"))),
    Group("coupling",
          "More than two samples: ARMS, CARMS, the unordered set, at equal "
          "evaluations",
          ("dynamic_mnist",), 100_000, 10_000,
          "One stochastic layer, nonlinear, official flags. Bernoulli, 4 "
          "evaluations per step: RLOO (K = 4), DisARM (2 pairs), ARMS (K = "
          "4, Dirichlet copula); the multi-sample bound: ARMS-bound, local "
          "DisARM (2 pairs) and VIMCO (K = 4). Categorical 20 x 10, 4 "
          "evaluations: RLOO (K = 4), CARMS (K = 4), the unordered-set "
          "estimator (K = 4) and DisARM-SB (2 pairs), 50,000 steps (half "
          "of `--steps_coupling`). The multi-sample-bound arms train the "
          "4-sample bound, shown as the training bound; the others train "
          "the ELBO.",
          seeds=(0,),
          extra_metrics=(("train_objective", "training bound (own K)"),)),
)
GROUPS += (
    Group("control_variates",
          "Learned control variates under the RODEO paper's protocol",
          ("dynamic_mnist",), 100_000, 10_000,
          "The RODEO paper's protocol (its launcher's settings): nonlinear "
          "network, one stochastic layer of 200 Bernoulli latents, batch "
          "100, Adam 1e-3 for encoder and decoder, prior logits fixed "
          "(`--prior_lr=0`), control variates trained by Adam 1e-3 "
          "(`--control_variate_lr`; β₁ = 0.999 here), no input centring or "
          "output-bias initialization, decoder trained on the estimator's "
          "samples. Equal evaluations per step within a setting: 2 (RLOO "
          "K = 2, DisARM, double CV, RODEO K = 2) and 3 (RLOO K = 3, double "
          "CV, RODEO K = 3, RELAX).",
          seeds=(0,),
          curves=(TRAIN_ELBO_CURVE, TEST_BOUND_CURVE, VARIANCE_CURVE)),
)
GROUP_BY_NAME = {g.name: g for g in GROUPS}

STUDY = (
    # 1. One stochastic layer, 2 evaluations each.
    Variant("binary", "linear", "disarm", "DisARM", BERNOULLI,
            dict(grad_type="disarm", encoder_type="linear", **OFFICIAL)),
    Variant("binary", "linear", "arm", "ARM", BERNOULLI,
            dict(grad_type="arm", encoder_type="linear", **OFFICIAL)),
    Variant("binary", "linear", "rloo", "RLOO (K=2)", BERNOULLI,
            dict(grad_type="rloo", encoder_type="linear", **OFFICIAL)),
    Variant("binary", "nonlinear", "disarm", "DisARM", BERNOULLI,
            dict(grad_type="disarm", encoder_type="nonlinear", **OFFICIAL)),
    Variant("binary", "nonlinear", "arm", "ARM", BERNOULLI,
            dict(grad_type="arm", encoder_type="nonlinear", **OFFICIAL)),
    Variant("binary", "nonlinear", "rloo", "RLOO (K=2)", BERNOULLI,
            dict(grad_type="rloo", encoder_type="nonlinear", **OFFICIAL)),
    # 2. Two and four stochastic layers.
    Variant("multilayer", "L2", "disarm", "DisARM", BERNOULLI,
            dict(grad_type="disarm", encoder_type="linear", num_layers=2,
                 **OFFICIAL)),
    Variant("multilayer", "L2", "rloo", "RLOO (K=2)",
            BERNOULLI, dict(grad_type="rloo", encoder_type="linear",
                            num_layers=2, **OFFICIAL)),
    Variant("multilayer", "L4", "disarm", "DisARM", BERNOULLI,
            dict(grad_type="disarm", encoder_type="linear", num_layers=4,
                 **OFFICIAL)),
    Variant("multilayer", "L4", "rloo", "RLOO (K=2)",
            BERNOULLI, dict(grad_type="rloo", encoder_type="linear",
                            num_layers=4, **OFFICIAL)),
    # 3. Multi-sample bound, equal evaluations (2P).
    *(v for p in MULTISAMPLE_PAIRS for v in (
        Variant("multisample", f"P{p}", "local_disarm",
                f"local DisARM ({p} pair{'s' if p > 1 else ''})",
                BERNOULLI, dict(grad_type="local_disarm",
                                encoder_type="nonlinear", num_pairs=p,
                                **OFFICIAL)),
        Variant("multisample", f"P{p}", "vimco", f"VIMCO (K={2 * p})",
                BERNOULLI, dict(grad_type="vimco", encoder_type="nonlinear",
                     num_pairs=p, **OFFICIAL)))),
    # 4. Categorical 20x10.
    Variant("categorical", "20x10", "rloo", "RLOO (K=10)", CATEGORICAL,
            dict(grad_type="rloo", **CATEGORICAL_20X10)),
    Variant("categorical", "20x10", "rloo_k2", "RLOO (K=2)", CATEGORICAL,
            dict(grad_type="rloo", num_samples=2, **CATEGORICAL_20X10)),
    Variant("categorical", "20x10", "arsm", "ARSM", CATEGORICAL,
            dict(grad_type="arsm", **CATEGORICAL_20X10)),
    Variant("categorical", "20x10", "arsm_plus", "ARSM+", CATEGORICAL,
            dict(grad_type="arsm_plus", **CATEGORICAL_20X10)),
    Variant("categorical", "20x10", "disarm_sb", "DisARM-SB",
            CATEGORICAL, dict(grad_type="disarm_sb", **CATEGORICAL_20X10)),
    # 6. Relaxations and straight-through (one evaluation each).
    *(Variant("relaxation", "nonlinear", name, label, BERNOULLI,
              dict(grad_type=name, encoder_type="nonlinear", bias_check=True,
                   **OFFICIAL))
      for name, label in (("disarm", "DisARM"), ("rloo", "RLOO (K=2)"),
                          ("straight_through", "straight-through"),
                          ("gumbel_softmax", "Gumbel-softmax"),
                          ("st_gumbel_softmax", "ST Gumbel-softmax"),
                          ("gumbel_rao", "Gumbel-Rao"),
                          ("reinmax", "ReinMax"))),
    *(Variant("relaxation", "20x10", arm, label, CATEGORICAL,
              dict(grad_type=name, bias_check=True,
                   decoder_grad="estimator_samples", **extra,
                   **CATEGORICAL_20X10), steps_divisor=2)
      for arm, name, label, extra in (
          ("rloo_k2", "rloo", "RLOO (K=2)", dict(num_samples=2)),
          ("disarm_sb", "disarm_sb", "DisARM-SB", {}),
          ("st_gumbel_softmax", "st_gumbel_softmax", "ST Gumbel-softmax", {}),
          ("gumbel_rao", "gumbel_rao", "Gumbel-Rao", {}),
          ("reinmax", "reinmax", "ReinMax", {}))),
    # 7. More than two samples, 4 evaluations each.
    *(Variant("coupling", setting, name, label, BERNOULLI,
              dict(grad_type=name, encoder_type="nonlinear", num_pairs=2,
                   **OFFICIAL))
      for setting, name, label in (
          ("mean4", "rloo", "RLOO (K=4)"), ("mean4", "disarm",
                                            "DisARM (2 pairs)"),
          ("mean4", "arms", "ARMS (K=4)"),
          ("bound4", "arms_bound", "ARMS-bound"),
          ("bound4", "local_disarm", "local DisARM (2 pairs)"),
          ("bound4", "vimco", "VIMCO (K=4)"))),
    *(Variant("coupling", "20x10", name, label, CATEGORICAL,
              dict(grad_type=name, num_samples=4, **CATEGORICAL_20X10),
              steps_divisor=2)
      for name, label in (("rloo", "RLOO (K=4)"), ("carms", "CARMS (K=4)"),
                          ("unordered_set", "unordered set (K=4)"),
                          ("disarm_sb", "DisARM-SB (2 pairs)"))),
    # 8. Learned control variates, the RODEO paper's protocol.
    *(Variant("control_variates", f"K{k}", name, label, BERNOULLI,
              dict(grad_type=name, num_samples=k, **RODEO_PROTOCOL,
                   **(RODEO_CONTROL if learned else {})))
      for k, name, label, learned in (
          (2, "rloo", "RLOO (K=2)", False), (2, "disarm", "DisARM", False),
          (2, "double_cv", "double CV (K=2)", True),
          (2, "rodeo", "RODEO (K=2)", True),
          (3, "rloo", "RLOO (K=3)", False),
          (3, "double_cv", "double CV (K=3)", True),
          (3, "rodeo", "RODEO (K=3)", True),
          (3, "relax", "RELAX", True))),
    # 5. The papers' length.
    Variant("paper", "nonlinear", "disarm", "DisARM", BERNOULLI,
            dict(grad_type="disarm", encoder_type="nonlinear", **OFFICIAL)),
    Variant("paper", "nonlinear", "rloo", "RLOO (K=2)", BERNOULLI,
            dict(grad_type="rloo", encoder_type="nonlinear", **OFFICIAL),
            datasets=("dynamic_mnist",)),
    Variant("paper", "nonlinear", "arm", "ARM", BERNOULLI,
            dict(grad_type="arm", encoder_type="nonlinear", **OFFICIAL),
            datasets=("dynamic_mnist",)),
    # The ablation of the protocol difference the gap to the paper could come
    # from: the decoder and prior trained on a separate sample, as the
    # papers' code does.
    Variant("paper", "nonlinear", "disarm_separate",
            "DisARM, separate decoder sample", BERNOULLI,
            dict(grad_type="disarm", encoder_type="nonlinear",
                 decoder_grad="separate_sample", **OFFICIAL),
            datasets=("dynamic_mnist",)),
)

SETTING_LABELS = {"mean4": "E_q[f], 4 evaluations",
                  "bound4": "multi-sample bound, 4 evaluations",
                  "linear": "linear", "nonlinear": "nonlinear", "L2": "L = 2",
                  "L4": "L = 4", "20x10": "20 x 10",
                  "K2": "2 evaluations", "K3": "3 evaluations",
                  **{f"P{p}": f"P = {p} (2P = {2 * p} evaluations)"
                     for p in MULTISAMPLE_PAIRS}}

# --------------------------------------------------------------------------
# The DisARM paper's numbers (theirs, not ours): nonlinear network, one
# stochastic layer, dynamic binarization, 1,000,000 steps.

DISARM_PAPER = "DisARM (Dong, Mnih, Tucker 2020)"
COUPLED_PAPER = "Coupled estimators (Dong, Mnih, Tucker 2021)"
RODEO_PAPER = "RODEO (Shi, Zhou, Hwang, Titsias, Mackey 2022)"
PAPER_STEPS = 1_000_000
# (dataset, setting, arm, metric) -> the DisARM paper's value.
PAPER_REFERENCE = {
    ("dynamic_mnist", "nonlinear", "disarm", "train_elbo"): -97.95,
    ("fashion_mnist", "nonlinear", "disarm", "train_elbo"): -234.4,
    ("omniglot", "nonlinear", "disarm", "train_elbo"): -108.6,
    ("fashion_mnist", "nonlinear", "disarm", "test_iwae"): -234.5,
    ("omniglot", "nonlinear", "disarm", "test_iwae"): -107.3,
}
# A gap to the paper's number larger than this (nats) at PAPER_STEPS is
# stated in the report and needs an explanation in NOTES.
PAPER_GAP_NATS = 1.0
PAPER_PROTOCOL = (
    "What still differs from the papers' protocol: (1) our decoder and prior "
    "are trained on the estimator's own samples "
    "(`--decoder_grad=estimator_samples`), while the papers' code uses a "
    "separate, third sample for the decoder gradient; (2) Omniglot is read "
    "from the stand-in `omniglot28.mat`, made offline from the original "
    "105×105 background and evaluation sets: the layout of IWAE's "
    "`chardata.mat` but not its images. Its split follows the original "
    "sets, 19,280 background images for training and validation (the last "
    "1,345 are the validation set) and the 13,180 images of the 20 "
    "evaluation alphabets, which training never sees, as the test set; "
    "the IWAE file has 24,345 training and 8,070 test images, and a "
    "different downsampling filter; (3) we evaluate every 25,000 steps on one fixed binarization of "
    "the validation and test sets, while the official code re-binarizes "
    "them at every evaluation.")



@dataclasses.dataclass(frozen=True)
class Reference:
  """A paper's published numbers set beside one table's runs.

  ``values`` maps (dataset, setting, arm, metric) to the paper's number
  (theirs, not ours), reported after ``steps`` training steps under
  ``setup``. ``protocol`` says what still differs from the paper. With
  ``gap_nats``, a finished run at the paper's length more than that far
  from the paper's number is stated and needs an explanation in ``NOTES``.
  """
  group: str
  paper: str
  setup: str
  steps: int
  values: Mapping[Tuple[str, str, str, str], float]
  protocol: str
  gap_nats: Optional[float] = None


# The RODEO paper reports its comparison as curves of the encoder gradient
# variance over 1,000,000 steps (dynamically binarized MNIST, nonlinear, one
# layer, mean of 5 seeds; its official repository publishes the figure). Its
# variance is ours: EMA (0.999) of g and g² of the batch-mean encoder
# gradient, mean over parameters. These values are read off that figure
# (theirs, not ours), by the curves' pixels, to about ±0.0002; it shows no
# RLOO curve.
RODEO_FIGURE = ("RODEO's gradient-variance figure (Shi et al. 2022, "
                "Bernoulli likelihoods, mean of 5 seeds; values read off the "
                "plot to about ±0.0002)")
RODEO_SETUP = "nonlinear network, dynamic binarization, its protocol"
# (setting, arm) -> the figure's variance at 100,000 and at 1,000,000 steps.
RODEO_FIGURE_VARIANCE = {
    ("K2", "disarm"): (0.0147, 0.0137),
    ("K2", "double_cv"): (0.0135, 0.0133),
    ("K2", "rodeo"): (0.0101, 0.0107),
    ("K3", "double_cv"): (0.0072, 0.0074),
    ("K3", "rodeo"): (0.0063, 0.0068),
    ("K3", "relax"): (0.0094, 0.0110),
}
RODEO_FIGURE_STEPS = (100_000, PAPER_STEPS)
RODEO_UNAVAILABLE = (
    "The RODEO paper's table of training ELBOs could not be retrieved on the "
    "machine that wrote this report (no copy of it beyond the paper's "
    "opening), so no ELBO of theirs is shown rather than a guess; the "
    "variances above are their published curves.")

# Papers' numbers beside the tables.
REFERENCES = (
    Reference("paper", "the DisARM paper (Dong, Mnih, Tucker 2020)",
              "nonlinear network, dynamic binarization", PAPER_STEPS,
              PAPER_REFERENCE, PAPER_PROTOCOL, gap_nats=PAPER_GAP_NATS),
    *(Reference("control_variates", RODEO_FIGURE, RODEO_SETUP, steps,
                {("dynamic_mnist", setting, arm, "grad_variance"): values[i]
                 for (setting, arm), values in RODEO_FIGURE_VARIANCE.items()},
                RODEO_UNAVAILABLE if steps == PAPER_STEPS else "")
      for i, steps in enumerate(RODEO_FIGURE_STEPS)),
)

# Notes printed by the report under the run's table, keyed by run name
# (``<group>/<dataset>-<setting>-<arm>-seed<seed>``). The explanation of a
# gap of more than PAPER_GAP_NATS to the DisARM paper at 1,000,000 steps goes
# here, e.g.
#   "paper/omniglot-nonlinear-disarm-seed0": "The gap comes from ...",
# The report marks every such gap without a note as "explanation pending".
# The same, unexplained shortfall on every data set: the common part of the
# notes on the DisARM runs other than dynamic MNIST's.
_SHARED_GAP_NOTE = (
    "Not explained yet; it has the same sign as the dynamic MNIST gap and "
    "a similar size, so it points at something common to the protocol "
    "rather than at this data set: the candidates and what is ruled out "
    "are those of the dynamic MNIST note above (same network, optimizers, "
    "batch, split and initialization as the official launcher; decoder "
    "sample measured on MNIST at a few tenths of a nat; our full "
    "permutation per epoch against their 1,024-image shuffle buffer "
    "untested). The estimators' order at 1,000,000 steps on dynamic MNIST "
    "is the paper's (DisARM above RLOO above ARM, one seed each), which "
    "argues against an estimator error; on Omniglot the same code comes "
    "within 1 nat of the paper's train ELBO. The run is still improving at "
    "1,000,000 steps (figure below).")

NOTES: Mapping[str, str] = {
    "paper/dynamic_mnist-nonlinear-disarm-seed0": (
        "The gap is not explained yet. Measured or ruled out so far (one "
        "seed): the decoder-gradient sample closes only a small part of it "
        "(the `dynamic_mnist-nonlinear-disarm_separate` row above, trained "
        "with the papers' separate decoder sample). The Omniglot file does "
        "not apply to MNIST. The evaluation binarization does not enter the "
        "train ELBO, which both codes compute the same way: a 1-sample ELBO "
        "over one epoch of freshly binarized training images. The official "
        "launcher sets the rest, and we follow it: the network, the "
        "optimizers and their learning rates, batch 50, the split (the "
        "first 50,000 training images) and the decoder's output-bias "
        "initialization. One difference of ours remains untested: we batch "
        "a full permutation of the training images per epoch, where the "
        "official pipeline shuffles the file order through a 1,024-image "
        "buffer. The run has not converged: its train ELBO still rises over "
        "the last 100,000 steps (figure below). Still open: whether the "
        "published number was computed with the launcher's defaults, and "
        "the spread over seeds (one seed here, five in the paper)."),
    "paper/fashion_mnist-nonlinear-disarm-seed0": _SHARED_GAP_NOTE,
    "paper/omniglot-nonlinear-disarm-seed0": (
        "The train ELBO is within 1 nat of the paper's; the test bound's "
        "gap comes from the data. Our test set is the original evaluation "
        "set: 20 alphabets that the training images never show (protocol "
        "difference 2 above). The paper's own numbers put its test bound "
        "above its train ELBO (−107.3 against −108.6), as on the other data "
        "sets, which a test set from unseen alphabets would not give. The gap is there before any training: at "
        "step 0 the validation bound (held-out background images) is "
        "−168.07 and the test bound −178.51, 10.4 nats apart; at 1,000,000 "
        "steps they are −107.32 and −120.15. The validation bound, the one "
        "held out from the training alphabets, is the paper's test number "
        "(−107.30) to a few hundredths of a nat, and it has stopped rising "
        "(−107.30 at 900,000 steps): the model does not overfit, it is "
        "tested on other alphabets."),
}


@dataclasses.dataclass(frozen=True)
class Claim:
  """A paper claim checked on the study's finished runs.

  In every setting of ``group`` holding both arms, ``arm`` should be better
  than ``other`` on ``metric`` (higher, or lower when ``higher_is_better`` is
  False), or, with ``tolerance`` > 0 ("competitive"), no worse than
  ``other`` by more than ``tolerance``. The report tests each setting with a
  paired t-test over the seeds both arms finished.
  """
  text: str
  source: str
  group: str
  arm: str
  other: str
  metric: str
  higher_is_better: bool = True
  tolerance: float = 0.0


CLAIMS = (
    Claim("DisARM reaches a higher train ELBO than ARM (2 evaluations each)",
          DISARM_PAPER, "binary", "disarm", "arm", "train_elbo"),
    Claim("DisARM reaches a higher train ELBO than RLOO (2 evaluations each)",
          DISARM_PAPER, "binary", "disarm", "rloo", "train_elbo"),
    Claim("DisARM's encoder gradient variance is lower than ARM's",
          DISARM_PAPER, "binary", "disarm", "arm", "grad_variance",
          higher_is_better=False),
    Claim("DisARM's encoder gradient variance is lower than RLOO's",
          DISARM_PAPER, "binary", "disarm", "rloo", "grad_variance",
          higher_is_better=False),
    Claim("With 2 and 4 stochastic layers, DisARM reaches a higher train "
          "ELBO than RLOO", DISARM_PAPER, "multilayer", "disarm", "rloo",
          "train_elbo"),
    Claim("With 2 and 4 stochastic layers, DisARM's encoder gradient "
          "variance is lower than RLOO's", DISARM_PAPER, "multilayer",
          "disarm", "rloo", "grad_variance", higher_is_better=False),
    Claim("Local DisARM beats VIMCO on the multi-sample bound at equal "
          "evaluations (test 100-sample bound)", DISARM_PAPER, "multisample",
          "local_disarm", "vimco", "test_iwae"),
    Claim("ARSM does worse than RLOO (K = C = 10) in train ELBO",
          COUPLED_PAPER, "categorical", "rloo", "arsm", "train_elbo"),
    Claim("ARSM+ (Rao-Blackwellized) does worse than RLOO (K = C = 10) in "
          "train ELBO", COUPLED_PAPER, "categorical", "rloo", "arsm_plus",
          "train_elbo"),
    Claim("Gumbel-Rao has lower encoder gradient variance than ST "
          "Gumbel-softmax at the same temperature",
          "Gumbel-Rao (Paulus, Maddison, Krause 2021)", "relaxation",
          "gumbel_rao", "st_gumbel_softmax", "grad_variance",
          higher_is_better=False),
    Claim("ReinMax reaches a higher train ELBO than ST Gumbel-softmax",
          "ReinMax (Liu et al. 2023)", "relaxation", "reinmax",
          "st_gumbel_softmax", "train_elbo"),
    Claim("ARMS reaches a higher train ELBO than RLOO at equal evaluations "
          "(K = 4)", "ARMS (Dimitriev & Zhou 2021)", "coupling", "arms",
          "rloo", "train_elbo"),
    Claim("CARMS reaches a higher train ELBO than RLOO at equal evaluations "
          "(K = 4)", "CARMS (Dimitriev & Zhou 2021)", "coupling", "carms",
          "rloo", "train_elbo"),
    Claim("Stick-breaking DisARM is competitive with RLOO at equal "
          "evaluations (K = 2): train ELBO no more than 1 nat below",
          COUPLED_PAPER, "categorical", "disarm_sb", "rloo_k2", "train_elbo",
          tolerance=1.0),
    Claim("RODEO's encoder gradient variance is lower than RLOO's at equal "
          "evaluations (K = 2 and 3)", RODEO_PAPER, "control_variates",
          "rodeo", "rloo", "grad_variance", higher_is_better=False),
    Claim("RODEO reaches a higher train ELBO than RLOO at equal evaluations "
          "(K = 2 and 3)", RODEO_PAPER, "control_variates", "rodeo", "rloo",
          "train_elbo"),
    Claim("RODEO's encoder gradient variance is lower than double CV's at "
          "equal evaluations (K = 2 and 3)", RODEO_PAPER, "control_variates",
          "rodeo", "double_cv", "grad_variance", higher_is_better=False),
)

# --------------------------------------------------------------------------
# Runs.


@dataclasses.dataclass(frozen=True)
class Options:
  """What the driver does (the absl flags of ``python -m experiments.study``).

  ``records`` defaults to ``records/`` beside the report and
  ``figures_dir`` to ``figures/`` beside it.
  """
  root: str = os.path.join("runs", "study")
  report: str = os.path.join("docs", "results.md")
  figures_dir: Optional[str] = None
  records: Optional[str] = None
  steps: Mapping[str, int] = dataclasses.field(default_factory=lambda: {
      g.name: g.default_steps for g in GROUPS})
  eval_every: Optional[int] = None
  only: Sequence[str] = ()
  datasets: Optional[Sequence[str]] = None
  seeds: Optional[Sequence[int]] = None
  dry_run: bool = False
  report_only: bool = False
  jobs: int = 1
  reuse_from: Sequence[str] = ("runs",)
  python: str = sys.executable

  @property
  def report_dir(self) -> str:
    return os.path.dirname(os.path.abspath(self.report))

  @property
  def records_dir(self) -> str:
    return os.path.abspath(self.records or os.path.join(self.report_dir,
                                                        "records"))

  @property
  def figures_path(self) -> str:
    return os.path.abspath(self.figures_dir or os.path.join(self.report_dir,
                                                            "figures"))


@dataclasses.dataclass(frozen=True)
class Run:
  """One training run of the study: a variant on a data set with a seed."""
  variant: Variant
  dataset: str
  seed: int
  steps: int
  eval_every: int
  logdir: str  # As passed to the binary (relative to the repo when inside).

  @property
  def group(self) -> str:
    return self.variant.group

  @property
  def short_name(self) -> str:
    """The name within its group: ``<dataset>-<setting>-<arm>-seed<seed>``."""
    v = self.variant
    return f"{self.dataset}-{v.setting}-{v.arm}-seed{self.seed}"

  @property
  def name(self) -> str:
    return f"{self.group}/{self.short_name}"

  @property
  def path(self) -> str:
    return os.path.join(REPO_ROOT, self.logdir)

  def flag_values(self) -> Dict[str, Any]:
    """Every flag the study passes, the step target and cadences included."""
    return {"dataset": self.dataset, **self.variant.flags, "seed": self.seed,
            "num_steps": self.steps, "eval_every": self.eval_every,
            "checkpoint_every": self.eval_every,
            "log_every": min(1000, self.eval_every), "logdir": self.logdir}

  def command(self, python: str = sys.executable) -> List[str]:
    return [python, "-m", self.variant.module] + [
        _flag_arg(k, v) for k, v in self.flag_values().items()
        if v is not None]


def _flag_arg(name: str, value: Any) -> str:
  if isinstance(value, bool):
    return f"--{name}" if value else f"--no{name}"
  return f"--{name}={value}"


def logdir_arg(path: str) -> str:
  """A path as given to the binaries: relative to the repository when inside
  it (stable across checkouts), absolute otherwise."""
  path = os.path.abspath(path)
  rel = os.path.relpath(path, REPO_ROOT)
  return path if rel.startswith("..") else rel


def study_runs(options: Options) -> List[Run]:
  """Every run of the study under ``options`` (datasets, seeds, steps)."""
  root = logdir_arg(options.root)
  runs = []
  for group in GROUPS:
    datasets = tuple(options.datasets or group.datasets)
    for dataset in datasets:
      for variant in (v for v in STUDY if v.group == group.name):
        if variant.datasets and dataset not in variant.datasets:
          continue
        for seed in (group.seeds if options.seeds is None else
                     options.seeds):
          name = f"{dataset}-{variant.setting}-{variant.arm}-seed{seed}"
          divisor = variant.steps_divisor
          runs.append(Run(
              variant, dataset, int(seed),
              max(1, int(options.steps[group.name]) // divisor),
              max(1, int(options.eval_every or group.eval_every) // divisor),
              os.path.join(root, group.name, name)))
  return runs


def select(runs: Sequence[Run], patterns: Sequence[str]) -> List[Run]:
  """Runs whose name or group matches a glob of ``patterns`` (all if none)."""
  if not patterns:
    return list(runs)
  return [r for r in runs
          if any(fnmatch.fnmatchcase(r.name, p) or
                 fnmatch.fnmatchcase(r.group, p) for p in patterns)]
