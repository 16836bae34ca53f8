"""The Bernoulli VAE (experiments.models.bernoulli) and its binary
(experiments.bernoulli_vae).

Model tests use tiny dimensions so that the ELBO gradient is exact by
enumeration; binary tests run short trainings on the synthetic data set.
"""

import itertools
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests import support
from experiments import bernoulli_vae as binary_vae
from experiments import vae_common
from tf_discrete import bernoulli
from experiments.models import bernoulli as vae
from experiments.models import networks

ROOT = support.ROOT
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT}


def tiny_model(num_layers=2, estimator="disarm", latent_dim=3, data_dim=5,
               encoder_type="linear", seed=0, **kwargs):
  config = vae.BernoulliVAEConfig(estimator=estimator, num_layers=num_layers,
                         latent_dim=latent_dim, data_dim=data_dim,
                         encoder_type=encoder_type, **kwargs)
  mean = np.linspace(0.1, 0.9, data_dim).astype(np.float32)
  model = vae.BernoulliVAE(config, mean, seed=seed)
  # Larger weights than the initialization, so gradients are far from 0.
  rng = np.random.RandomState(seed + 1)
  for v in model.trainable_variables:
    v.assign(np.asarray(rng.randn(*v.shape), np.float32))
  return model


def batch(data_dim=5, size=2, seed=0):
  rng = np.random.RandomState(seed)
  return tf.constant((rng.rand(size, data_dim) < 0.5).astype(np.float32))


def exact_elbo(model, x):
  """E_q[f] by enumerating every state of every stochastic layer; [B]."""
  cfg = model.config
  states = bernoulli.FAMILY.enumerate_states([cfg.latent_dim])
  num_states, num_layers = states.shape[0], cfg.num_layers
  log_q, below, samples, logits = 0.0, x, [], []
  for layer in range(num_layers):
    # Layer l's states vary along axis l of [N] * L + [B, D].
    shape = [1] * num_layers + [1, cfg.latent_dim]
    shape[layer] = num_states
    b = tf.broadcast_to(tf.reshape(states, shape),
                        [num_states] * num_layers + [x.shape[0],
                                                     cfg.latent_dim])
    lg = model.encoder_logits(layer, below)
    log_q += bernoulli.FAMILY.log_prob(b, lg)
    samples.append(b)
    logits.append(lg)
    below = b
  f = model.elbo_terms(0, x, samples, logits, pathwise_log_q=True)
  return tf.reduce_sum(tf.exp(log_q) * f, axis=list(range(num_layers)))


def flat_gradients(model, x, seeds):
  """Per-seed gradients of the surrogate, flattened; [len(seeds), P]."""
  variables = model.trainable_variables

  @tf.function(jit_compile=True)
  def grad(seed):
    with tf.GradientTape() as tape:
      surrogate, _ = model.training_objective(x, seed)
    return tf.concat([tf.reshape(g, [-1])
                      for g in tape.gradient(surrogate, variables)], 0)

  return np.stack([grad(tf.constant([7, s])).numpy() for s in seeds])


# --------------------------------------------------------------------------
# Model.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("num_layers,estimator,options", [
    (1, "disarm", {}),
    (1, "disarm", {"decoder_grad": networks.SEPARATE_SAMPLE}),
    (2, "disarm", {}),
    (2, "disarm", {"shared_randomness": True}),
    (2, "disarm", {"decoder_grad": networks.SEPARATE_SAMPLE}),
    (2, "rloo", {"shared_randomness": True,
                 "decoder_grad": networks.SEPARATE_SAMPLE}),
    (3, "arm", {}),
])
def test_gradient_is_unbiased_against_enumeration(num_layers, estimator,
                                                  options):
  """Mean of many surrogate gradients = exact ELBO gradient (all groups)."""
  model = tiny_model(num_layers, estimator, **options)
  x = batch()
  with tf.GradientTape() as tape:
    exact = tf.reduce_mean(exact_elbo(model, x))
  exact_grad = np.concatenate([
      tf.reshape(g, [-1]).numpy()
      for g in tape.gradient(exact, model.trainable_variables)])
  grads = flat_gradients(model, x, range(2000))
  z = (grads.mean(0) - exact_grad) / (grads.std(0) / np.sqrt(len(grads))
                                      + 1e-6)
  assert np.all(np.abs(z) < 5), np.abs(z).max()


@pytest.mark.parametrize("shared", [True, False])
def test_shared_randomness_builds_each_pair_on_the_forward_noise(
    monkeypatch, shared):
  """With shared_randomness, layer l's pair is drawn from the forward pass's
  uniform of layer l (the original code's common noise), so the forward
  sample is the pair's second member; without it the pair is independent."""
  model = tiny_model(3, latent_dim=6, shared_randomness=shared)
  x = batch(size=4)
  branches, forward = [], []
  original_estimate, original_forward = bernoulli.estimate, model._forward_pass

  def spy_estimate(objective, logits, *args, **kwargs):
    def spy_objective(samples):
      branches.append(samples)
      return objective(samples)
    return original_estimate(spy_objective, logits, *args, **kwargs)

  def spy_forward(*args):
    forward.append(original_forward(*args))
    return forward[-1]

  monkeypatch.setattr(vae.bernoulli, "estimate", spy_estimate)
  monkeypatch.setattr(model, "_forward_pass", spy_forward)
  model.training_objective(x, tf.constant([5, 6]))
  matches = [np.array_equal(branches[l][1], forward[0].samples[l])
             for l in range(3)]
  assert matches == [shared] * 3


def estimates(model, x, num_seeds):
  """Layer 1's estimates (batch means) for seeds 0..num_seeds-1."""
  fn = tf.function(lambda seed: model.training_objective(x, seed)[1],
                   jit_compile=True)
  return np.array([fn(tf.constant([1, s])).numpy() for s in range(num_seeds)])


def test_estimate_is_the_elbo_and_bound_is_consistent():
  model = tiny_model(2)
  x = batch()
  exact = exact_elbo(model, x).numpy().mean()
  values = estimates(model, x, 400)
  assert abs(values.mean() - exact) < 5 * values.std() / 20
  bound = tf.function(model.log_likelihood_bound, jit_compile=True)
  many = bound(x, 4000, tf.constant([1, 2])).numpy()
  # The 4000-sample bound is above the ELBO and below log p(x) <= 0.
  assert many.mean() > exact and np.all(many < 0)
  one = np.array([bound(x, 1, tf.constant([3, s])).numpy().mean()
                  for s in range(400)])
  assert abs(one.mean() - exact) < 5 * one.std() / 20


def test_multi_sample_bound_keeps_the_log_q_path():
  """VIMCO's estimate is the K-sample bound, and above the ELBO."""
  model = tiny_model(1, "vimco", num_samples=8)
  x = batch()
  assert estimates(model, x, 200).mean() > exact_elbo(model, x).numpy().mean()
  assert model.objective_name == "multi-sample bound"


def test_same_seed_same_gradient_eager_and_xla():
  model = tiny_model(2, shared_randomness=True)
  x = batch()
  variables = model.trainable_variables

  def grad(seed):
    with tf.GradientTape() as tape:
      surrogate, _ = model.training_objective(x, seed)
    return tape.gradient(surrogate, variables)

  seed = tf.constant([3, 4])
  eager = grad(seed)
  xla = tf.function(grad, jit_compile=True)(seed)
  for a, b in zip(eager, xla):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_initialization_and_centring():
  mean = np.linspace(0.0, 1.0, 6).astype(np.float32)
  config = vae.BernoulliVAEConfig(data_dim=6, latent_dim=4, demean_input=True,
                         initialize_with_bias=True,
                         encoder_type="nonlinear")
  model = vae.BernoulliVAE(config, mean)
  clipped = np.clip(mean, 1e-3, 1 - 1e-3)
  np.testing.assert_allclose(model.decoders[0].biases[-1].numpy(),
                             np.log(clipped / (1 - clipped)), rtol=1e-5)
  assert model.decoders[0].sizes == (4, 200, 200, 6)
  assert model.encoders[0].sizes == (6, 200, 200, 4)
  # Centring: the mean image has the encoder output of a zero input.
  np.testing.assert_allclose(
      model.encoder_logits(0, mean[None]).numpy(),
      model.encoders[0](tf.zeros([1, 6])).numpy(), atol=1e-6)
  np.testing.assert_allclose(model.prior_logits.numpy(), 0)


def test_networks_of_the_protocol():
  config = vae.BernoulliVAEConfig(num_layers=3)
  model = vae.BernoulliVAE(config, np.full(784, 0.1, np.float32))
  assert [m.sizes for m in model.encoders] == [(784, 200), (200, 200),
                                               (200, 200)]
  assert [m.sizes for m in model.decoders] == [(200, 784), (200, 200),
                                               (200, 200)]
  groups = model.parameter_groups()
  assert sorted(groups) == ["decoder", "encoder", "prior"]
  assert sum(len(v) for v in groups.values()) == len(
      model.trainable_variables)


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_layers=5), "num_layers"),
    (dict(shared_randomness=True), "shared_randomness"),
    (dict(estimator="vimco", num_layers=2), "num_layers=1 only"),
    (dict(estimator="local_disarm",
          decoder_grad=networks.SEPARATE_SAMPLE), "decoder_grad"),
    (dict(estimator="disarm", num_samples=3), "even"),
    (dict(estimator="rloo", num_samples=1), "at least 2"),
    (dict(estimator="nope"), "available"),
    (dict(encoder_type="deep"), "encoder_type"),
    (dict(decoder_grad="both"), "decoder_grad"),
])
def test_config_rejects_inapplicable_settings(kwargs, match):
  with pytest.raises(ValueError, match=match):
    vae.BernoulliVAEConfig(**kwargs)


def test_gradient_basket_matches_bound_and_cost():
  names, excluded = vae.gradient_basket(vae.BernoulliVAEConfig(estimator="disarm"))
  assert {"ar", "arm", "reinforce", "rloo"} <= set(names)
  assert {"vimco", "local_disarm"} <= set(excluded)
  for name in names:  # Unbiased estimators of E_q[f] at the same cost.
    est = bernoulli.get(name)
    assert est.facts.unbiased and not vae.estimates_bound(name)
    assert est.evaluations(2, [200]) == 2
  assert all(n in excluded for n in bernoulli.available()
             if not bernoulli.get(n).facts.unbiased)
  names, _ = vae.gradient_basket(vae.BernoulliVAEConfig(estimator="vimco",
                                               num_samples=4))
  assert "local_disarm" in names
  assert all(vae.estimates_bound(n) for n in names)
  names, excluded = vae.gradient_basket(vae.BernoulliVAEConfig(estimator="reinforce"))
  assert names == ["ar"] and "rloo" in excluded  # 1 evaluation: no pairs.


# --------------------------------------------------------------------------
# Binary: flags.
# --------------------------------------------------------------------------


def flag_values(**overrides):
  values = binary_vae.default_flag_values()
  values.update(dataset="synthetic", **overrides)
  return values


@pytest.mark.parametrize("overrides,match", [
    (dict(shared_randomness=True), "shared_randomness"),
    (dict(grad_type="vimco", num_layers=2), "num_layers=1 only"),
    (dict(grad_type="local-disarm", num_layers=3), "num_layers=1 only"),
    (dict(grad_type="reinforce_loo", num_pairs=1, num_layers=1,
          decoder_grad="bogus"), "decoder_grad"),
    (dict(tpu="grpc://1.2.3.4:8470"), "--tpu needs --strategy=tpu"),
    (dict(strategy="tpu", jit_compile=False), "always compiles"),
    (dict(bias_check_repeats=10), "need --bias_check"),
    (dict(bias_check_reference_samples=10), "need --bias_check"),
    (dict(bias_check=True, grad_type="vimco"), "multi-sample bound"),
    (dict(grad_type="vimco", decoder_grad="separate_sample"),
     "decoder_grad"),
    (dict(manual_dir="/data"), "do not apply"),
    (dict(temperature_decay=1e-4), "does not have"),
    (dict(grad_type="gumbel_softmax", min_temperature=0.5),
     "needs `temperature_decay`"),
    (dict(grad_type="gumbel_softmax", temperature=0.4,
          temperature_decay=1e-4, min_temperature=0.5), "min_temperature"),
    (dict(control_variate_lr=1e-3), "no.*control variates|has none"),
])
def test_inapplicable_flags_are_errors(overrides, match):
  with pytest.raises(ValueError, match=match):
    binary_vae.check_flags(flag_values(**overrides))


@pytest.mark.parametrize("overrides", [
    dict(grad_type="reinforce", estimate_grad_basket=True, num_layers=2),
    dict(grad_type="arm", num_layers=4, shared_randomness=True,
         decoder_grad="separate_sample", bias_check=True,
         bias_check_repeats=10),
    dict(grad_type="local-disarm", num_pairs=4, estimate_grad_basket=True),
    dict(strategy="tpu", tpu="grpc://1.2.3.4:8470"),
    dict(grad_type="gumbel_softmax", temperature_decay=1e-4,
         min_temperature=0.2),
    dict(grad_type="relax", control_variate_lr=1e-3),
])
def test_applicable_flag_combinations_pass(overrides):
  binary_vae.check_flags(flag_values(**overrides))


def test_official_spellings_and_num_pairs():
  config = binary_vae.check_flags(flag_values(grad_type="reinforce_loo"))
  assert (config.estimator, config.evaluations) == ("rloo", 2)
  config = binary_vae.check_flags(flag_values(grad_type="local-disarm",
                                              num_pairs=3))
  assert (config.estimator, config.evaluations) == ("local_disarm", 6)
  config = binary_vae.check_flags(flag_values(grad_type="vimco",
                                              num_pairs=2))
  assert config.evaluations == 4
  config = binary_vae.check_flags(flag_values(grad_type="rodeo",
                                              num_samples=3))
  assert (config.estimator, config.evaluations) == ("rodeo", 3)
  with pytest.raises(ValueError, match="give one"):
    binary_vae.check_flags(flag_values(num_pairs=1, num_samples=2))


def test_cli_reports_inapplicable_flag_before_loading_data():
  result = subprocess.run(
      [sys.executable, "-m", "experiments.bernoulli_vae", "--dataset=omniglot",
       "--shared_randomness"], cwd=ROOT, env=ENV, capture_output=True,
      text=True, timeout=120)
  assert result.returncode != 0
  assert "shared_randomness" in result.stderr + result.stdout
  assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------
# Binary: training runs.
# --------------------------------------------------------------------------


def read_rows(logdir):
  with open(os.path.join(logdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_short_run_improves_and_writes_every_output(tmp_path):
  logdir = str(tmp_path / "run")
  summary = binary_vae.run(flag_values(
      num_steps=300, eval_every=150, checkpoint_every=150, log_every=100,
      num_eval_samples=10, demean_input=True, initialize_with_bias=True,
      logdir=logdir))
  rows = read_rows(logdir)
  assert [r["step"] for r in rows] == [0, 150, 300]
  assert rows[-1]["train_elbo"] > rows[0]["train_elbo"] + 20
  assert rows[-1]["test_iwae"] > rows[0]["test_iwae"] + 20
  # The IWAE bound is at least the ELBO (on held-out data, roughly).
  assert rows[-1]["valid_iwae"] > rows[-1]["train_elbo"] - 20
  for key in ("steps", "train_steps_per_sec", "wall_time_sec", "train_elbo",
              "valid_iwae", "test_iwae", "grad_variance", "flags"):
    assert summary[key] is not None, key
  assert summary["steps"] == 300 and summary["grad_variance"] > 0
  with open(os.path.join(logdir, "summary.json")) as f:
    assert json.load(f)["flags"]["grad_type"] == "disarm"
  assert os.path.getsize(os.path.join(logdir, "curves.png")) > 10_000
  assert any(name.startswith("events.out.tfevents")
             for name in os.listdir(logdir))


def test_sigkill_and_restart_loses_and_duplicates_no_rows(tmp_path):
  logdir = str(tmp_path / "run")
  command = [sys.executable, "-m", "experiments.bernoulli_vae",
             "--dataset=synthetic", "--num_steps=1000", "--eval_every=100",
             "--checkpoint_every=100", "--num_eval_samples=5",
             f"--logdir={logdir}"]
  process = subprocess.Popen(command, cwd=ROOT, env=ENV,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  index = os.path.join(logdir, "checkpoints", "checkpoint")
  deadline = time.time() + 180
  try:
    while time.time() < deadline and process.poll() is None:
      if os.path.exists(index) and "ckpt-300" in open(index).read():
        break
      time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
  finally:
    process.wait()
  assert process.returncode == -signal.SIGKILL, "run ended before the kill"
  with open(index) as f:
    killed_at = int(f.readline().split("ckpt-")[1].strip().strip('"'))
  written = [r["step"] for r in read_rows(logdir)]
  assert written[:killed_at // 100 + 1] == list(range(0, killed_at + 1, 100))

  restart = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True,
                           text=True, timeout=300)
  assert restart.returncode == 0, restart.stderr[-3000:]
  assert f"at step {killed_at}" in restart.stdout
  steps = [r["step"] for r in read_rows(logdir)]
  assert steps == list(range(0, 1001, 100))
  with open(os.path.join(logdir, "summary.json")) as f:
    summary = json.load(f)
  assert summary["steps"] == 1000
  assert summary["session_steps"] == 1000 - killed_at


def supported(name, num_layers):
  """Whether the model runs ``name`` with ``num_layers`` (it says so with a
  ValueError otherwise, e.g. for multi-sample bounds beyond one layer)."""
  try:
    vae.BernoulliVAEConfig(estimator=name, num_layers=num_layers,
                           latent_dim=3, data_dim=5)
  except ValueError:
    return False
  return True


def step_cases(layers):
  return [(num_layers, name) for num_layers, name in itertools.product(
      layers, bernoulli.available()) if supported(name, num_layers)]


def gradient_fn(model, x, jit_compile):
  """seed -> ({group: gradients}, estimate)."""
  groups = model.parameter_groups()

  @tf.function(jit_compile=jit_compile)
  def grad(seed):
    with tf.GradientTape() as tape:
      surrogate, estimate = model.training_objective(x, seed)
    return tape.gradient(surrogate, groups), estimate

  return grad


@pytest.mark.parametrize("num_layers,estimator", step_cases([1, 2, 4]))
def test_every_estimator_takes_a_step(num_layers, estimator):
  """One optimizer step per estimator and depth (graph mode, tiny model)."""
  model = tiny_model(num_layers, estimator, latent_dim=8, data_dim=16,
                     shared_randomness=num_layers > 1)
  grads, estimate = gradient_fn(model, batch(16, 10), False)(
      tf.constant([1, 2]))
  assert np.isfinite(estimate.numpy())
  groups = model.parameter_groups()
  optimizers = vae_common.optimizer_fns(
      binary_vae.default_flag_values(),
      control_variate=bernoulli.get(estimator).facts.trainable_state)
  assert set(optimizers) == set(groups)
  for name, variables in groups.items():
    assert all(np.all(np.isfinite(g)) for g in grads[name]), name
    assert any(np.any(g.numpy() != 0) for g in grads[name]), name
    before = [v.numpy() for v in variables]
    optimizers[name]().apply([-g for g in grads[name]], variables)
    assert any(not np.array_equal(b, v.numpy())
               for b, v in zip(before, variables)), name


def check_compiles_and_matches_graph_mode(num_layers, estimator):
  model = tiny_model(num_layers, estimator, latent_dim=8, data_dim=16,
                     shared_randomness=num_layers > 1)
  x, seed = batch(16, 10), tf.constant([3, 4])
  xla_grads, xla_estimate = gradient_fn(model, x, True)(seed)
  grads, estimate = gradient_fn(model, x, False)(seed)
  np.testing.assert_allclose(xla_estimate, estimate, rtol=1e-5)
  for a, b in zip(tf.nest.flatten(xla_grads), tf.nest.flatten(grads)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("num_layers,estimator", [
    (2 if supported(name, 2) else 1, name)
    for name in bernoulli.available() if supported(name, 1)])
def test_every_estimator_step_compiles_under_xla(num_layers, estimator):
  """Same seed, same step with jit_compile=True (deepest supported: 2)."""
  check_compiles_and_matches_graph_mode(num_layers, estimator)


@pytest.mark.slow
@pytest.mark.parametrize("num_layers,estimator", step_cases([4]))
def test_every_estimator_step_compiles_under_xla_four_layers(num_layers,
                                                              estimator):
  check_compiles_and_matches_graph_mode(num_layers, estimator)


def check_resume_equals_straight_run(tmp_path, steps, keys, **flags):
  """Runs ``steps`` steps straight (logdir ``a``) and in two sessions split
  at ``steps // 2`` (logdir ``b``); asserts the same summary ``keys``."""
  straight = binary_vae.run(flag_values(
      num_steps=steps, logdir=str(tmp_path / "a"), **flags))
  binary_vae.run(flag_values(num_steps=steps // 2,
                             logdir=str(tmp_path / "b"), **flags))
  resumed = binary_vae.run(flag_values(num_steps=steps,
                                       logdir=str(tmp_path / "b"), **flags))
  assert resumed["session_steps"] == steps - steps // 2
  for key in keys:
    np.testing.assert_allclose(resumed[key], straight[key], rtol=1e-5)


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(tmp_path):
  """Same flags, stopped at a checkpoint and restarted: same numbers."""
  check_resume_equals_straight_run(
      tmp_path, 100, ("train_elbo", "valid_iwae", "test_iwae",
                      "grad_variance", "grad_variance/rloo"),
      num_eval_samples=5, eval_every=50, checkpoint_every=50, num_layers=2,
      shared_randomness=True, estimate_grad_basket=True)
  assert [r["step"] for r in read_rows(str(tmp_path / "b"))] == [0, 50, 100]


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
  script = f"""
import json, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from experiments import bernoulli_vae as binary_vae
from experiments import vae_common
values = binary_vae.default_flag_values()
values.update(dataset="synthetic", num_steps=20, eval_every=10,
              num_eval_samples=4, strategy="mirrored",
              logdir={str(tmp_path)!r})
print("SUMMARY", json.dumps(binary_vae.run(values)))
"""
  result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads(result.stdout.split("SUMMARY", 1)[1])
  assert summary["replicas"] == 2 and summary["steps"] == 20
  assert np.isfinite(summary["test_iwae"]) and summary["grad_variance"] > 0


def test_annealed_temperature_and_control_variates_resume(tmp_path):
  """A run with learned control variates and one with an annealed
  temperature: the control-variate parameters are trained by their own
  optimizer and checkpointed; the temperature follows its schedule, is
  logged, and continues across a restart; stopped and resumed equals
  straight through."""
  common = dict(num_eval_samples=5, eval_every=20, checkpoint_every=20,
                log_every=20, batch_size=10)
  check_resume_equals_straight_run(
      tmp_path, 40, ("train_elbo", "test_iwae", "grad_variance"),
      grad_type="relax", encoder_type="nonlinear", control_variate_lr=3e-3,
      **common)
  # The checkpoint holds each variable once, under the first path to it:
  # here its optimizer's list of the variables it trains.
  reader = tf.train.load_checkpoint(str(tmp_path / "a" / "checkpoints"))
  initial = bernoulli.get("relax").state_spec([200])["hidden_kernel"]
  saved = [reader.get_tensor(n) for n, shape in
           reader.get_variable_to_shape_map().items()
           if n.startswith("optimizer_control_variate/_trainable_variables/")
           and list(shape) == list(initial.shape)]
  assert len(saved) == 1, "control-variate weights missing from the checkpoint"
  assert not np.allclose(saved[0], initial), "control variate never trained"

  anneal = dict(grad_type="gumbel_softmax", temperature=1.0,
                temperature_decay=0.01, min_temperature=0.7, **common)
  binary_vae.run(flag_values(num_steps=20, logdir=str(tmp_path / "c"),
                             **anneal))
  binary_vae.run(flag_values(num_steps=60, logdir=str(tmp_path / "c"),
                             **anneal))
  temperatures = {r["step"]: r["temperature"]
                  for r in read_rows(str(tmp_path / "c"))}
  # Evaluated after the step's update: the value set for the last step.
  expected = {s: max(0.7, np.exp(-0.01 * max(s - 1, 0)))
              for s in (0, 20, 40, 60)}
  for step, value in expected.items():
    np.testing.assert_allclose(temperatures[step], value, rtol=1e-5)
