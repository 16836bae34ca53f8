"""Categorical VAE: model wiring, the experiment binary, its flags and outputs.

Short training runs use small generated data
(``experiments.vae_common.synthetic_splits``, passed to ``run(values,
splits=...)``), so no dataset is needed.
"""

import json
import os
import subprocess
import sys

from absl import flags
import numpy as np
import pytest
import tensorflow as tf

from tests import support
from experiments import bernoulli_vae as binary_vae
from experiments import categorical_vae as binary
from experiments import cli
from experiments import vae_common
from tf_discrete import categorical
from experiments.models import categorical as cvae
from experiments.models import networks
from experiments import training

ALL_ESTIMATORS = categorical.available()
# Estimators that differentiate the objective in its samples need the
# one-hot decoder input and the estimator-samples decoder gradient.
SAMPLE_GRADIENT = {n for n in ALL_ESTIMATORS
                   if categorical.get(n).facts.needs_objective_gradient}
ROOT = support.ROOT
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT}


def _flat(groups):
  return tf.concat([tf.reshape(g, [-1]) for k in sorted(groups)
                    for g in groups[k]], 0)


def _values(tmp_path, **overrides):
  values = binary.default_flag_values()
  values.update(dataset=vae_common.SYNTHETIC, logdir=str(tmp_path / "run"),
                num_eval_samples=4, log_every=10**6)
  values.update(overrides)
  return values


@pytest.fixture(scope="module")
def tiny_data():
  """400 training images of 64 pixels near 4 prototypes; 40 per eval set."""
  return vae_common.synthetic_splits(seed=3, num_train=400, num_eval=40,
                                 num_prototypes=4, data_dim=64)


# --------------------------------------------------------------------------
# Model.
# --------------------------------------------------------------------------


def _tiny_model(**kw):
  defaults = dict(encoder_type="linear", num_variables=2, num_categories=3,
                  data_dim=6)
  config = cvae.CategoricalVAEConfig(**{**defaults, **kw})
  model = cvae.CategoricalVAE(config, np.full(6, 0.4, np.float32), seed=1)
  model.prior_logits.assign([[0.5, -0.3, 0.1], [0.2, 0.9, -1.0]])
  return model


def _exact_gradient(model, x):
  """Gradient of the exact mean ELBO (sum over all C^V states)."""
  states = categorical.FAMILY.enumerate_states(model.config.event_shape)
  z = tf.broadcast_to(states[:, None],
                      [states.shape[0], x.shape[0]] + model.config.event_shape)
  groups = model.parameter_groups()
  with tf.GradientTape() as tape:
    logits = model.encoder_logits(x)
    q = tf.exp(categorical.FAMILY.log_prob(z, logits))
    elbo = tf.reduce_mean(tf.reduce_sum(q * model.elbo(x, z, logits), 0))
  return _flat(tape.gradient(elbo, groups)).numpy()


def _mean_gradient(model, x, runs):
  """Mean and standard error of ``runs`` seeded surrogate gradients."""
  groups = model.parameter_groups()
  size = sum(int(np.prod(v.shape)) for g in groups.values() for v in g)

  @tf.function
  def loop():
    def body(i, s1, s2):
      with tf.GradientTape() as tape:
        surrogate, _ = model.training_objective(x, tf.stack([i, 7]))
      g = _flat(tape.gradient(surrogate, groups))
      return i + 1, s1 + g, s2 + g * g
    _, s1, s2 = tf.while_loop(lambda i, *_: i < runs, body,
                              (0, tf.zeros([size]), tf.zeros([size])))
    return s1 / runs, s2 / runs

  mean, second = (t.numpy() for t in loop())
  return mean, np.sqrt(np.maximum(second - mean**2, 0) / runs)


GRADIENT_CASES = [
    ("rloo", networks.ESTIMATOR_SAMPLES, True),
    ("arsm_plus", networks.SEPARATE_SAMPLE, False),
    ("disarm_sb", networks.SEPARATE_SAMPLE, True),
    ("disarm_iw", networks.ESTIMATOR_SAMPLES, False),
]
SLOW_GRADIENT_CASES = [
    (name, grad, one_hot) for name in ALL_ESTIMATORS if name != "disarm_tree"
    and categorical.get(name).facts.unbiased
    for grad in networks.DECODER_GRADS for one_hot in (False, True)
    if (name, grad, one_hot) not in GRADIENT_CASES]


def _check_unbiased(name, decoder_grad, one_hot, runs):
  model = _tiny_model(estimator=name, decoder_grad=decoder_grad,
                      one_hot=one_hot, demean_input=one_hot)
  x = tf.constant([[1, 0, 1, 1, 0, 0], [0, 0, 1, 0, 1, 1]], tf.float32)
  exact = _exact_gradient(model, x)
  mean, stderr = _mean_gradient(model, x, runs)
  z = np.abs(mean - exact) / (stderr + 1e-6)
  # ~60 coordinates; |z| > 5 has probability ~3e-5 for an unbiased mean.
  assert z.max() < 5, (z.max(), mean, exact)


@pytest.mark.parametrize("name,decoder_grad,one_hot", GRADIENT_CASES)
def test_training_gradient_is_the_exact_elbo_gradient(name, decoder_grad,
                                                      one_hot):
  """Encoder, decoder and prior: the mean surrogate gradient is exact."""
  _check_unbiased(name, decoder_grad, one_hot, runs=2000)


@pytest.mark.slow
@pytest.mark.parametrize("name,decoder_grad,one_hot", SLOW_GRADIENT_CASES)
def test_training_gradient_is_exact_every_estimator(name, decoder_grad,
                                                    one_hot):
  _check_unbiased(name, decoder_grad, one_hot, runs=5000)


def test_decoder_input_encodings():
  z = tf.one_hot([[[2, 0]]], 3)  # [S=1, B=1, V=2, C=3]
  expected = {
      (True, False): [0, 0, 1, 1, 0, 0],
      (True, True): [-1, -1, 1, 1, -1, -1],
      (False, False): [2, 0],
      (False, True): [3, -1],
  }
  for (one_hot, demean), value in expected.items():
    model = _tiny_model(one_hot=one_hot, demean_input=demean)
    np.testing.assert_allclose(model.decoder_input(z)[0, 0], value)
    assert model.decoder.sizes[0] == len(value)


def test_network_sizes_follow_the_protocol():
  config = cvae.CategoricalVAEConfig()
  model = cvae.CategoricalVAE(config, np.full(784, 0.2, np.float32))
  assert model.encoder.sizes == (784, 512, 256, 200)
  assert model.decoder.sizes == (20, 256, 512, 784)  # Indices by default.
  assert model.encoder.alpha == model.decoder.alpha == 0.2
  one_hot = cvae.CategoricalVAE(
      cvae.CategoricalVAEConfig(one_hot=True, encoder_type="linear",
                                num_variables=32, num_categories=16),
      np.full(784, 0.2, np.float32))
  assert one_hot.encoder.sizes == (784, 512)
  assert one_hot.decoder.sizes == (512, 784)
  assert one_hot.prior_logits.shape == (32, 16)
  np.testing.assert_array_equal(one_hot.prior_logits.numpy(), 0)


def test_initialize_with_bias_sets_the_output_bias():
  mean = np.linspace(0, 1, 784).astype(np.float32)
  model = cvae.CategoricalVAE(
      cvae.CategoricalVAEConfig(initialize_with_bias=True), mean)
  bias = model.decoder.biases[-1].numpy()
  clipped = np.clip(mean, 1e-3, 1 - 1e-3)
  np.testing.assert_allclose(bias, np.log(clipped / (1 - clipped)),
                             rtol=1e-5, atol=1e-5)


def test_iwae_bound_is_log_mean_exp_of_elbos():
  model = _tiny_model(one_hot=True)
  x = tf.constant(np.random.RandomState(0).rand(5, 6) < 0.5, tf.float32)
  seed = tf.constant([0, 2])
  bound = model.log_likelihood_bound(x, 50, seed)
  logits = model.encoder_logits(x)
  f = model.elbo(x, model.posterior_samples(logits, 50, seed), logits)
  assert bound.shape == (5,) and f.shape == (50, 5)
  np.testing.assert_allclose(
      bound, tf.reduce_logsumexp(f, 0) - np.log(50.0), rtol=1e-6)
  assert np.all(bound.numpy() >= tf.reduce_mean(f, 0).numpy())
  np.testing.assert_allclose(model.log_likelihood_bound(x, 1, seed),
                             f[0], rtol=1e-6)


def test_one_sample_bound_is_unbiased_for_the_exact_elbo():
  """Mean of many 1-sample bounds = the ELBO summed over all C^V states."""
  model = _tiny_model(one_hot=True)
  x = tf.constant(np.random.RandomState(1).rand(3, 6) < 0.5, tf.float32)
  logits = model.encoder_logits(x)
  states = categorical.FAMILY.enumerate_states(model.config.event_shape)
  z = tf.broadcast_to(states[:, None], [states.shape[0], 3, 2, 3])
  q = tf.exp(-tf.nn.softmax_cross_entropy_with_logits(
      z, tf.broadcast_to(logits, z.shape)))
  exact = tf.reduce_sum(tf.reduce_prod(q, -1) * model.elbo(x, z, logits), 0)
  draws = model.log_likelihood_bound(
      tf.tile(x, [20000, 1]), 1, tf.constant([5, 6])).numpy().reshape(20000, 3)
  z_score = (draws.mean(0) - exact) / (draws.std(0) / np.sqrt(20000))
  assert np.all(np.abs(z_score) < 4), (draws.mean(0), exact.numpy())
  samples = model.posterior_samples(logits, 4, tf.constant([0, 1]))
  assert samples.shape == (4, 3, 2, 3)
  np.testing.assert_array_equal(tf.reduce_sum(samples, -1), 1.0)


@pytest.mark.parametrize("estimator", ["disarm_sb", "rloo", "arsm_plus"])
def test_same_seed_same_objective_and_gradient_eager_and_xla(estimator):
  """Values and the gradients of every parameter group agree."""
  model = _tiny_model(estimator=estimator, one_hot=True)
  x = tf.constant([[1, 0, 1, 1, 0, 0], [0, 1, 1, 0, 1, 0]], tf.float32)
  groups = model.parameter_groups()

  def value_and_grads(seed):
    with tf.GradientTape() as tape:
      surrogate, estimate = model.training_objective(x, seed)
    return estimate, _flat(tape.gradient(surrogate, groups))

  seed = tf.constant([3, 4])
  eager = value_and_grads(seed)
  graph = tf.function(value_and_grads)(seed)
  xla = tf.function(value_and_grads, jit_compile=True)(seed)
  assert np.any(eager[1].numpy() != 0)
  for other in (graph, xla):
    np.testing.assert_allclose(eager[0], other[0], rtol=1e-5)
    np.testing.assert_allclose(eager[1], other[1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs,message", [
    (dict(estimator="nope"), "available"),
    (dict(estimator="arsm", num_samples=46), "fixed"),
    (dict(estimator="ars", num_samples=10), "fixed"),
    (dict(estimator="rloo", num_samples=1), "at least 2"),
    (dict(estimator="disarm_sb", num_samples=3), "even"),
    (dict(estimator="rloo", estimator_options={"logits_order": "ascending"}),
     "logits_order"),
    (dict(estimator="disarm_sb", estimator_options={"logits_order": "sideways"}),
     "logits_order"),
    (dict(estimator="disarm_tree", num_categories=10), "power of 2"),
    (dict(num_categories=1), "at least 2"),
    (dict(num_variables=0), "positive"),
    (dict(encoder_type="deep"), "encoder_type"),
    (dict(decoder_grad="both"), "decoder_grad"),
])
def test_config_errors(kwargs, message):
  with pytest.raises((ValueError, TypeError), match=message):
    cvae.CategoricalVAEConfig(**kwargs)


def test_override_uses_defaults_of_the_other_estimator():
  config = cvae.CategoricalVAEConfig(
      estimator="disarm_sb", estimator_options={"logits_order": "abs"},
      num_samples=4)
  assert cvae.resolve_override(config) == ("disarm_sb", 4,
                                           {"logits_order": "abs"})
  assert cvae.resolve_override(config, "disarm_iw", 4) == ("disarm_iw", 4, {})
  assert cvae.resolve_override(config, "arsm", None) == ("arsm", None, {})
  with pytest.raises(ValueError, match="fixed"):
    cvae.resolve_override(config, "arsm", 4)


def test_gradient_basket():
  config = cvae.CategoricalVAEConfig(estimator="disarm_sb")
  same, excluded = cvae.gradient_basket(config)
  assert {("ar", 2), ("disarm_iw", 2), ("reinforce", 2), ("rloo", 2)} <= set(
      same)
  assert {"ars", "ars_plus", "arsm", "arsm_plus", "disarm_tree"} <= set(
      excluded)
  for name, count in same:  # Unbiased, at the run's cost.
    assert categorical.get(name).facts.unbiased and count == 2
  assert all(n in excluded for n in categorical.available()
             if not categorical.get(n).facts.unbiased)
  named, _ = cvae.gradient_basket(config, ["rloo:10", "arsm", "disarm_iw"])
  assert named == [("rloo", 10), ("arsm", None), ("disarm_iw", 2)]
  for names, message in [(["disarm_sb"], "own estimator"),
                         (["rloo", "rloo:4"], "twice"),
                         (["rloo:x"], "integer"),
                         (["arsm:7"], "fixed"),
                         (["nope"], "available")]:
    with pytest.raises(ValueError, match=message):
      cvae.gradient_basket(config, names)


# --------------------------------------------------------------------------
# Flags.
# --------------------------------------------------------------------------


BAD_FLAGS = [
    (dict(grad_type="arsm", num_samples=46), "num_samples does not apply"),
    (dict(grad_type="arsmp", num_samples=10), "num_samples does not apply"),
    (dict(grad_type="rloo", logits_order="ascending"), "logits_order"),
    (dict(grad_type="arsm", logits_order="abs"), "logits_order"),
    (dict(grad_type="rloo", num_samples=1), "at least 2"),
    (dict(grad_type="disarm", num_samples=3), "even"),
    (dict(grad_type="disarm_tree"), "power of 2"),
    (dict(grad_type="disarm", tree_structure=True), "power of 2"),
    (dict(grad_type="rloo", stick_breaking=True), "stick_breaking"),
    (dict(grad_type="reinforce_loo", stick_breaking=True), "stick_breaking"),
    (dict(grad_type="disarm_sb", importance_weight=True), "disarm_iw"),
    (dict(grad_type="disarm", importance_weight=True, tree_structure=True,
          num_categories=16), "exclude each other"),
    (dict(tpu="grpc://x"), "strategy=tpu"),
    (dict(strategy="tpu", jit_compile=False), "nojit_compile"),
    (dict(bias_check_repeats=5), "need --bias_check"),
    (dict(estimate_grad_basket=["rloo"]), "own estimator"),
    (dict(estimate_grad_basket=["same_cost", "arsm"]), "stands alone"),
    (dict(grad_type="reinforce", estimate_grad_basket=["rloo"]), "rloo"),
    (dict(dataset="synthetic", manual_dir="/x"), "do not apply"),
]


@pytest.mark.parametrize("overrides,message", BAD_FLAGS)
def test_inapplicable_flags_are_errors(overrides, message):
  values = binary.default_flag_values()
  values.update(overrides)
  with pytest.raises(ValueError, match=message):
    binary.check_flags(values)


@pytest.mark.parametrize("grad_type,extra,estimator", [
    ("reinforce_loo", {}, "rloo"),
    ("arsp", {}, "ars_plus"),
    ("arsmp", {}, "arsm_plus"),
    ("disarm", {}, "disarm_sb"),
    ("disarm", dict(stick_breaking=True), "disarm_sb"),
    ("disarm", dict(stick_breaking=True, importance_weight=True),
     "disarm_iw"),
    ("disarm", dict(tree_structure=True, num_categories=16), "disarm_tree"),
    ("disarm_iw", dict(stick_breaking=True), "disarm_iw"),
    ("arsm", {}, "arsm"),
])
def test_official_spellings(grad_type, extra, estimator):
  values = {**binary.default_flag_values(), "grad_type": grad_type, **extra}
  assert binary.check_flags(values).estimator == estimator


def _fresh_flags(module=binary):
  flag_values = flags.FlagValues()
  cli.define_flags(module.FLAG_SPECS, flag_values)
  return flag_values


def test_defined_flags_match_defaults():
  flag_values = _fresh_flags()
  flag_values(["prog"])
  assert {k: flag_values[k].value for k in binary.FLAG_NAMES} == (
      binary.default_flag_values())
  assert set(flag_values["grad_type"].parser.enum_values) >= set(ALL_ESTIMATORS)
  issue_flags = (
      "dataset grad_type encoder_type num_variables num_categories "
      "num_samples logits_order one_hot batch_size genmo_lr infnet_lr "
      "prior_lr num_steps demean_input initialize_with_bias "
      "num_eval_samples seed logdir estimate_grad_basket strategy tpu "
      "jit_compile eval_every checkpoint_every data_dir manual_dir").split()
  assert set(issue_flags) <= set(binary.FLAG_NAMES)
  defaults = binary.default_flag_values()
  assert (defaults["num_variables"], defaults["num_categories"],
          defaults["batch_size"]) == (20, 10, 200)


def test_official_readme_command_parses():
  flag_values = _fresh_flags()
  flag_values([
      "prog", "--dataset=dynamic_mnist", "--logdir=/tmp/logdir",
      "--encoder_type=nonlinear", "--num_steps=1000000", "--demean_input",
      "--initialize_with_bias", "--grad_type=disarm", "--num_variables=32",
      "--num_categories=16", "--batch_size=200", "--one_hot",
      "--stick_breaking", "--importance_weight", "--logits_order=ascending"])
  config = binary.check_flags(
      {k: flag_values[k].value for k in binary.FLAG_NAMES})
  assert (config.estimator, config.estimator_options, config.event_shape,
          config.one_hot) == ("disarm_iw", {"logits_order": "ascending"},
                              [32, 16], True)


def test_both_binaries_share_a_process():
  """Importing defines no global flag; each binary's flags parse alone."""
  for name in ("num_categories", "logits_order", "num_layers", "grad_type",
               "batch_size"):
    assert name not in flags.FLAGS, name
  for module in (binary, binary_vae):
    assert callable(module.build_trainer) and callable(module.run)
    flag_values = _fresh_flags(module)
    flag_values(["prog", "--dataset=synthetic"])
    values = {k: flag_values[k].value for k in module.FLAG_NAMES}
    assert values == {**module.default_flag_values(), "dataset": "synthetic"}
    module.check_flags(values)
  assert binary.default_flag_values()["batch_size"] == 200
  assert binary_vae.default_flag_values()["batch_size"] == 50


def test_flag_errors_come_before_any_data_is_loaded(tmp_path):
  values = {**binary.default_flag_values(), "dataset": "omniglot",
            "manual_dir": str(tmp_path / "missing"), "logits_order": "abs"}
  with pytest.raises(ValueError, match="logits_order"):
    binary.build_trainer(values)
  assert not os.listdir(tmp_path)


def test_default_logdir():
  values = {**binary.default_flag_values(), "grad_type": "disarm",
            "importance_weight": True, "seed": 3}
  assert binary.default_logdir(values) == (
      "/tmp/tf_discrete/categorical_vae/"
      "dynamic_mnist-disarm_iw-nonlinear-20x10-seed3")
  assert binary_vae.default_logdir(binary_vae.default_flag_values()) == (
      "/tmp/tf_discrete/bernoulli_vae/dynamic_mnist-disarm-linear-L1-seed0")


def test_cli_rejects_inapplicable_flags():
  result = subprocess.run(
      [sys.executable, "-m", "experiments.categorical_vae",
       "--dataset=omniglot", "--grad_type=arsm", "--num_samples=10"],
      cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
  assert result.returncode != 0
  assert "--num_samples does not apply" in result.stderr
  assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------
# Training runs.
# --------------------------------------------------------------------------


def _read_rows(logdir):
  with open(os.path.join(logdir, training.METRICS_FILE)) as f:
    return [json.loads(line) for line in f]


@pytest.mark.parametrize("estimator", ALL_ESTIMATORS)
def test_short_run_improves_the_elbo(tmp_path, tiny_data, estimator):
  values = _values(
      tmp_path, grad_type=estimator, encoder_type="linear", num_variables=4,
      num_categories=4, one_hot=True, batch_size=40, num_steps=120,
      eval_every=120, checkpoint_every=120, genmo_lr=3e-3, infnet_lr=3e-3,
      # One estimator through XLA (the binary's default); the others in
      # graph mode, which compiles faster.
      jit_compile=estimator == "disarm_sb",
      decoder_grad=(networks.ESTIMATOR_SAMPLES if estimator in SAMPLE_GRADIENT
                    else networks.SEPARATE_SAMPLE))
  summary = binary.run(values, splits=tiny_data)
  rows = _read_rows(values["logdir"])
  assert [r["step"] for r in rows] == [0, 120]
  first, last = rows[0], rows[-1]
  for key in ("train_elbo", "valid_iwae", "test_iwae", "grad_variance"):
    assert np.isfinite(last[key]), (key, last)
  assert last["train_elbo"] > first["train_elbo"] + 5, (first, last)
  assert last["test_iwae"] > first["test_iwae"] + 5, (first, last)
  assert summary["flags"]["estimator"] == estimator
  assert summary["steps"] == 120


class _Interrupted(Exception):
  pass


def test_outputs_basket_and_resume_after_interruption(tmp_path, tiny_data):
  """Every output; basket variances; an interrupted run resumes exactly."""
  values = _values(tmp_path, grad_type="disarm", logits_order="abs",
                   encoder_type="linear", num_variables=4, num_categories=5,
                   batch_size=40, num_steps=40, eval_every=10,
                   checkpoint_every=20, jit_compile=False,
                   estimate_grad_basket=["rloo", "arsm_plus"],
                   bias_check=True, bias_check_repeats=20,
                   bias_check_reference_samples=8)
  logdir = values["logdir"]
  # Interrupted at the end, after the evaluation of step 40 and before its
  # checkpoint: rows up to step 40 are written, the checkpoint is step 20.
  trainer = binary.build_trainer(values, splits=tiny_data)
  save = trainer.manager.save

  def save_or_stop(checkpoint_number):
    if checkpoint_number > 20:
      raise _Interrupted()
    return save(checkpoint_number=checkpoint_number)

  trainer.manager.save = save_or_stop
  with pytest.raises(_Interrupted):
    trainer.run()
  interrupted = _read_rows(logdir)
  assert [r["step"] for r in interrupted] == [0, 10, 20, 30, 40]
  assert training.SUMMARY_FILE not in os.listdir(logdir)

  summary = binary.run(values, splits=tiny_data)
  rows = _read_rows(logdir)
  assert [r["step"] for r in rows] == [0, 10, 20, 30, 40]
  assert (summary["steps"], summary["session_steps"]) == (40, 20)
  # The rows after the checkpoint are recomputed, to the same numbers.
  for key in ("train_elbo", "test_iwae", "grad_variance",
              "grad_variance/rloo", "train_objective"):
    for step in (3, 4):
      np.testing.assert_allclose(rows[step][key], interrupted[step][key],
                                 rtol=1e-5)
  files = os.listdir(logdir)
  for name in (training.METRICS_FILE, training.SUMMARY_FILE,
               training.CURVES_FILE, training.CONFIG_FILE,
               training.CHECKPOINT_DIR):
    assert name in files
  assert any(f.startswith("events.out.tfevents") for f in files)
  assert os.path.getsize(os.path.join(logdir, training.CURVES_FILE)) > 10_000
  with open(os.path.join(logdir, training.SUMMARY_FILE)) as f:
    stored = json.load(f)
  assert stored["steps"] == 40 and stored["flags"]["estimator"] == "disarm_sb"
  assert summary["flags"]["basket"] == [["rloo", 2], ["arsm_plus", None]]
  for key in ("grad_variance", "grad_variance/rloo",
              "grad_variance/arsm_plus", "bias_check/relative_error",
              "bias_check/relative_noise"):
    assert summary[key] > 0
  # A different model in the same logdir is refused.
  with pytest.raises(ValueError, match="other settings"):
    binary.run({**values, "num_steps": 50, "num_categories": 6},
               splits=tiny_data)


@pytest.mark.parametrize("shape,extra", [
    ((20, 10), dict(grad_type="reinforce_loo")),
    ((32, 16), dict(grad_type="disarm", tree_structure=True, one_hot=True)),
])
def test_paper_sizes_build_and_take_a_compiled_step(tmp_path, shape, extra):
  """20x10 and 32x16, nonlinear networks, 784 pixels, XLA: build, step."""
  splits = vae_common.synthetic_splits(seed=1, num_train=400, num_eval=20)
  values = _values(tmp_path, num_variables=shape[0],
                   num_categories=shape[1], num_steps=1, num_eval_samples=2,
                   demean_input=True, initialize_with_bias=True,
                   jit_compile=True, **extra)
  trainer = binary.build_trainer(values, splits=splits)
  assert trainer.model.encoder.sizes == (784, 512, 256, shape[0] * shape[1])
  before = [v.numpy() for v in trainer.groups["encoder"]]
  estimate = trainer.train_steps(1)
  assert np.isfinite(estimate) and int(trainer.step.numpy()) == 1
  assert any(not np.array_equal(b, v.numpy())
             for b, v in zip(before, trainer.groups["encoder"]))
  assert trainer.run_config["evaluations"] == (
      10 if shape == (20, 10) else 2)


@pytest.mark.slow
def test_mirrored_strategy_runs(tmp_path, tiny_data):
  values = _values(tmp_path, grad_type="arsm", strategy="mirrored",
                   encoder_type="linear", num_variables=4, num_categories=4,
                   batch_size=40, num_steps=20, eval_every=20,
                   checkpoint_every=20)
  summary = binary.run(values, splits=tiny_data)
  assert summary["steps"] == 20 and np.isfinite(summary["train_elbo"])
