"""The generic training loop (experiments.training), with a toy model.

The toy model follows the loop's model protocol without being a VAE, so
these tests check the loop itself: batches, evaluation, variance
bookkeeping, bias check, checkpoints and outputs.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import support
from experiments import training
from experiments.training import step as training_step

ROOT = support.ROOT
DIM = 6


class NoisyQuadratic(tf.Module):
  """Maximizes -|x - w|^2 - |v - 1|^2 with noisy gradients for w.

  "Estimators": None adds N(0, 1) noise to w's gradient, "noisy" N(0, 100),
  "biased" N(0, 1) plus 0.5, "exact" nothing. The bound of an image is its
  pixel sum, so evaluations are exact averages.
  """

  variance_group = "encoder"
  objective_name = "toy objective"
  _noise = {None: (1.0, 0.0), "noisy": (10.0, 0.0), "biased": (1.0, 0.5),
            "exact": (0.0, 0.0)}

  def __init__(self, default_estimator=None, dim=DIM):
    super().__init__()
    self.default_estimator = default_estimator
    self.w = tf.Variable(tf.zeros([dim]))
    self.v = tf.Variable(tf.zeros([dim]))

  def parameter_groups(self):
    return {"encoder": [self.w], "decoder": [self.v]}

  def training_objective(self, x, seed, estimator=None, num_samples=None):
    del num_samples
    scale, shift = self._noise[estimator or self.default_estimator]
    noise = scale * tf.random.stateless_normal(self.w.shape, seed) + shift
    value = (-tf.reduce_mean(tf.reduce_sum(tf.square(x - self.w), -1))
             - tf.reduce_sum(tf.square(self.v - 1.0)))
    return value + tf.reduce_sum(tf.stop_gradient(noise) * self.w), value

  def log_likelihood_bound(self, x, num_samples, seed):
    del num_samples, seed
    return tf.reduce_sum(x, -1)


def optimizers():
  return {"encoder": lambda: keras.optimizers.Adam(1e-2),
          "decoder": lambda: keras.optimizers.SGD(1e-1)}


def make_trainer(logdir, num_steps=20, images=None, eval_sets=(),
                 model_fn=NoisyQuadratic, dynamic=True, batch_size=10,
                 **kwargs):
  if images is None:
    images = np.random.RandomState(0).rand(40, DIM).astype(np.float32)
  config = training.TrainConfig(logdir=str(logdir), num_steps=num_steps,
                                batch_size=batch_size, **kwargs)
  return training.Trainer(model_fn, optimizers(), images, list(eval_sets),
                          config, dynamic=dynamic,
                          binarize=lambda x, seed: x)


def rows(logdir):
  with open(os.path.join(logdir, training.METRICS_FILE)) as f:
    return [json.loads(line) for line in f]


def test_gradient_moments_are_bias_corrected_emas():
  like = [tf.Variable(tf.zeros([3])), tf.Variable(tf.zeros([2, 2]))]
  moments = training.GradientMoments(["a", "b"], like, decay=0.9)
  assert moments.variances() == {}
  rng = np.random.RandomState(0)
  grads = [[rng.randn(3), rng.randn(2, 2)] for _ in range(30)]
  for g in grads:
    moments.update({"a": [tf.constant(x, tf.float32) for x in g],
                    "b": [tf.constant(2 * x, tf.float32) for x in g]})
  weights = 0.1 * 0.9 ** np.arange(29, -1, -1)
  weights /= weights.sum()
  flat = np.stack([np.concatenate([x.ravel() for x in g]) for g in grads])
  mean, mean_sq = weights @ flat, weights @ flat**2
  expected = np.mean(mean_sq - mean**2)
  got = moments.variances()
  np.testing.assert_allclose(got["a"], expected, rtol=1e-4)
  np.testing.assert_allclose(got["b"], 4 * expected, rtol=1e-4)


def test_metrics_log_truncates_and_writes_valid_json(tmp_path):
  log = training.MetricsLog(str(tmp_path))
  for step in (0, 10, 20):
    log.write({"step": step, "wall_time": 1.0, "m": float(step),
               "bad": float("nan")})
  assert log.truncate(10) == 1
  assert [r["step"] for r in log.rows()] == [0, 10]
  assert log.rows()[0]["bad"] is None
  assert log.truncate(10) == 0


def test_plot_curves_writes_a_png(tmp_path):
  path = str(tmp_path / "curves.png")
  training.plot_curves(
      [{"step": s, "train_elbo": -100.0 + s, "test_iwae": -95.0 + s,
        "grad_variance": 1.0 / (1 + s), "eval_time_sec": 1.0}
       for s in range(5)], path)
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_each_epoch_visits_every_image_once(tmp_path):
  # Image i holds i in pixel 0, so a batch tells which images it used.
  images = np.zeros([40, DIM], np.float32)
  images[:, 0] = np.arange(40)
  trainer = make_trainer(tmp_path, images=images, dynamic=False)
  seen = []
  for epoch in range(3):
    trainer.train_step.order.assign(trainer.train_step.permutation(tf.constant(epoch)))
    seen.append(np.concatenate([
        trainer.train_step.batch(tf.constant(epoch * 4 + s),
                             tf.constant([0, s]))[:, 0].numpy()
        for s in range(4)]))
  for order in seen:
    assert sorted(order) == list(range(40))
  assert not np.array_equal(seen[0], seen[1])


def test_calls_end_at_every_event(tmp_path):
  trainer = make_trainer(tmp_path, num_steps=95, log_every=7, eval_every=30,
                         checkpoint_every=50)  # 4 batches per epoch.
  step, stops = 0, []
  while step < 95:
    step += trainer.steps_to_next_event(step)
    stops.append(step)
  for period in (7, 30, 50, 4):
    assert all(s in stops for s in range(period, 95, period))
  assert stops[-1] == 95


def test_evaluation_is_an_exact_mean_over_uneven_chunks(tmp_path):
  images = np.random.RandomState(1).rand(23, DIM).astype(np.float32)
  eval_set = training.EvalSet("sums", images, num_samples=3)
  trainer = make_trainer(tmp_path, eval_sets=[eval_set], eval_rows=12)
  metrics = trainer.evaluate(0)  # Chunks of 4 images: 6 chunks, 3 in last.
  np.testing.assert_allclose(metrics["sums"], images.sum(1).mean(),
                             rtol=1e-6)


def test_training_outputs_and_variance_basket(tmp_path):
  eval_set = training.EvalSet("sums", np.ones([8, DIM], np.float32), 1)
  trainer = make_trainer(tmp_path, num_steps=400, eval_every=200,
                         log_every=100, eval_sets=[eval_set],
                         basket=(("noisy", None),))
  summary = trainer.run()
  w = trainer.model.w.numpy()
  np.testing.assert_allclose(w, trainer.train_step.train_images.numpy().mean(0),
                             atol=0.3)
  np.testing.assert_allclose(trainer.model.v.numpy(), 1.0, atol=1e-3)
  # Gradient noise variances 1 and 100 dominate the tracked variances.
  assert 0.8 < summary["grad_variance"] < 2.0
  assert 80 < summary["grad_variance/noisy"] < 150
  assert [r["step"] for r in rows(tmp_path)] == [0, 200, 400]
  assert summary["train_steps_per_sec"] > 0
  assert summary["train_time_sec"] < summary["wall_time_sec"]
  assert trainer.train_step.fn.experimental_get_tracing_count() == 1
  for name in (training.SUMMARY_FILE, training.CURVES_FILE,
               training.CONFIG_FILE):
    assert os.path.exists(os.path.join(tmp_path, name))


def test_resume_continues_exactly_where_it_stopped(tmp_path):
  def run(logdir, num_steps):
    trainer = make_trainer(logdir, num_steps=num_steps, eval_every=10,
                           checkpoint_every=10, basket=(("noisy", None),))
    summary = trainer.run()
    return trainer, summary

  straight, straight_summary = run(tmp_path / "a", 30)
  run(tmp_path / "b", 20)
  resumed, resumed_summary = run(tmp_path / "b", 30)
  assert resumed_summary["session_steps"] == 10
  for a, b in zip(straight.checkpoint.model.trainable_variables,
                  resumed.checkpoint.model.trainable_variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  for key in ("grad_variance", "grad_variance/noisy"):
    assert straight_summary[key] == resumed_summary[key]
  assert [r["step"] for r in rows(tmp_path / "b")] == [0, 10, 20, 30]


def test_resume_drops_rows_after_the_checkpoint(tmp_path):
  make_trainer(tmp_path, num_steps=20, eval_every=10,
               checkpoint_every=10).run()
  # A row written after the last checkpoint by a run that was then killed.
  with open(os.path.join(tmp_path, training.METRICS_FILE), "a") as f:
    f.write(json.dumps({"step": 25, "wall_time": 0.0}) + "\n")
  make_trainer(tmp_path, num_steps=30, eval_every=10,
               checkpoint_every=10).run()
  assert [r["step"] for r in rows(tmp_path)] == [0, 10, 20, 30]


def test_resume_refuses_other_settings(tmp_path):
  def trainer(run_config):
    return training.Trainer(
        NoisyQuadratic, optimizers(), np.zeros([20, DIM], np.float32), [],
        training.TrainConfig(logdir=str(tmp_path), num_steps=10,
                             batch_size=10, eval_every=10),
        binarize=lambda x, s: x, run_config=run_config,
        resumable_keys=["num_steps"])

  trainer({"lr": 1, "num_steps": 10}).run()
  trainer({"lr": 1, "num_steps": 20}).run()  # Allowed to change.
  with pytest.raises(ValueError, match="lr: 1 -> 2"):
    trainer({"lr": 2, "num_steps": 30}).run()


def test_bias_check_separates_biased_from_unbiased(tmp_path):
  def check(estimator):
    trainer = make_trainer(
        tmp_path / str(estimator),
        model_fn=lambda: NoisyQuadratic(default_estimator=estimator),
        bias_check=training.BiasCheck(
            images=np.ones([10, DIM], np.float32),
            reference_estimator="exact", repeats=400, reference_repeats=4))
    metrics = trainer.evaluate(0)
    return (metrics["bias_check/relative_error"],
            metrics["bias_check/relative_noise"])

  error, noise = check(None)
  assert error < 2.5 * noise
  error, noise = check("biased")
  assert error > 5 * noise


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_steps=0), "num_steps"),
    (dict(eval_every=1.5), "eval_every"),
    (dict(seed=-1), "seed"),
    (dict(ema_decay=1.0), "ema_decay"),
])
def test_train_config_validation(kwargs, match):
  with pytest.raises(ValueError, match=match):
    training.TrainConfig(**{"logdir": "/tmp/x", "num_steps": 10, **kwargs})


def test_trainer_validation(tmp_path):
  with pytest.raises(ValueError, match="exceeds"):
    make_trainer(tmp_path, batch_size=50)
  with pytest.raises(ValueError, match="one optimizer per parameter group"):
    training.Trainer(NoisyQuadratic, {"encoder": optimizers()["encoder"]},
                     np.zeros([20, DIM], np.float32), [],
                     training.TrainConfig(logdir=str(tmp_path), num_steps=1,
                                          batch_size=10))
  with pytest.raises(ValueError, match="strategy"):
    training.make_strategy("horovod")
  with pytest.raises(ValueError, match="needs strategy 'tpu'"):
    training.make_strategy("default", tpu="grpc://1.2.3.4:8470")


def test_training_loop_compiles_once(tmp_path):
  """Calls of different lengths at different steps reuse one XLA program."""
  dump = tmp_path / "dump"
  script = f"""
import sys
sys.path.insert(0, {os.path.dirname(__file__)!r})
import test_training as t
trainer = t.make_trainer({str(tmp_path / 'run')!r}, num_steps=57,
                         log_every=7, eval_every=50)
trainer.run()
"""
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT,
         "XLA_FLAGS": f"--xla_dump_to={dump}"}
  result = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  compiled = [name for name in os.listdir(dump)
              if "train_loop" in name and name.endswith("before_optimizations.txt")]
  assert len(compiled) == 1, compiled


@pytest.mark.parametrize("make_optimizer", [
    lambda: keras.optimizers.Adam(1e-2),
    lambda: keras.optimizers.SGD(1e-1),
    lambda: keras.optimizers.Adam(1e-2, clipnorm=0.1),
    lambda: keras.optimizers.AdamW(1e-2, weight_decay=0.1),
])
def test_apply_gradients_equals_keras_apply(make_optimizer):
  rng = np.random.RandomState(0)
  init = [rng.randn(4, 3).astype(np.float32), rng.randn(3).astype(np.float32)]
  grads = [[tf.constant(rng.randn(*v.shape).astype(np.float32))
            for v in init] for _ in range(3)]
  results = []
  for apply in (training_step.apply_gradients,
                lambda opt, g, v: opt.apply(g, v)):
    variables = [tf.Variable(v) for v in init]
    optimizer = make_optimizer()
    optimizer.build(variables)
    step = tf.function(lambda g, opt=optimizer, vs=variables, ap=apply:
                       ap(opt, g, vs), jit_compile=True)
    for g in grads:
      step(g)
    results.append(([v.numpy() for v in variables],
                    int(optimizer.iterations.numpy())))
  (fast, fast_steps), (reference, reference_steps) = results
  assert fast_steps == reference_steps == 3
  for a, b in zip(fast, reference):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_apply_gradients_uses_keras_apply_when_features_are_on():
  plain = keras.optimizers.Adam(1e-3)
  assert training_step.has_plain_update(plain)
  for optimizer in (keras.optimizers.Adam(1e-3, clipnorm=1.0),
                    keras.optimizers.Adam(1e-3, global_clipnorm=1.0),
                    keras.optimizers.AdamW(1e-3, weight_decay=0.1),
                    keras.optimizers.Adam(1e-3, use_ema=True),
                    keras.optimizers.Adam(1e-3, gradient_accumulation_steps=2)):
    assert not training_step.has_plain_update(optimizer), optimizer.get_config()


# --------------------------------------------------------------------------
# Faults: damaged checkpoints, the logdir lock, torn metrics lines.
# --------------------------------------------------------------------------


def _values(logdir):
  """The rows without their wall-clock fields."""
  clock = ("wall_time", "eval_time_sec", "train_time_sec", "steps_per_sec")
  return [{k: v for k, v in r.items() if k not in clock}
          for r in rows(logdir)]


def _checkpoint_trainer(logdir, num_steps=40):
  eval_set = training.EvalSet("sums", np.ones([8, DIM], np.float32), 1)
  return make_trainer(logdir, num_steps=num_steps, eval_every=10,
                      checkpoint_every=10, eval_sets=[eval_set])


def _truncate_data(logdir, number):
  directory = os.path.join(logdir, training.CHECKPOINT_DIR)
  for name in os.listdir(directory):
    if name.startswith(f"ckpt-{number}.data-"):
      with open(os.path.join(directory, name), "r+b") as f:
        f.truncate(os.path.getsize(os.path.join(directory, name)) // 2)


def test_resume_falls_back_from_a_damaged_checkpoint(tmp_path):
  straight = _checkpoint_trainer(tmp_path / "a")
  straight.run()
  _checkpoint_trainer(tmp_path / "b", num_steps=30).run()
  _truncate_data(tmp_path / "b", 30)
  resumed = _checkpoint_trainer(tmp_path / "b")
  summary = resumed.run()
  assert resumed.restored_from.endswith("ckpt-20")
  assert summary["session_steps"] == 20
  assert _values(tmp_path / "b") == _values(tmp_path / "a")
  np.testing.assert_array_equal(resumed.model.w.numpy(),
                                straight.model.w.numpy())
  directory = tmp_path / "b" / training.CHECKPOINT_DIR
  assert sorted(os.listdir(directory / "damaged")) == [
      "ckpt-30.data-00000-of-00001", "ckpt-30.index"]
  assert resumed.manager.latest_checkpoint.endswith("ckpt-40")


def test_resume_finds_a_complete_checkpoint_the_state_file_omits(tmp_path):
  """A kill after a save's files, before the state file names them."""
  _checkpoint_trainer(tmp_path, num_steps=30).run()
  directory = str(tmp_path / training.CHECKPOINT_DIR)
  state = os.path.join(directory, "checkpoint")
  with open(state) as f:
    text = f.read()
  with open(state, "w") as f:
    f.write(text.replace('model_checkpoint_path: "ckpt-30"',
                         'model_checkpoint_path: "ckpt-20"').replace(
                             'all_model_checkpoint_paths: "ckpt-30"\n', ""))
  os.makedirs(os.path.join(directory, "ckpt-40_temp"))  # A killed save.
  resumed = _checkpoint_trainer(tmp_path)
  assert resumed.manager.latest_checkpoint.endswith("ckpt-20")
  assert resumed.run()["session_steps"] == 10
  assert resumed.restored_from.endswith("ckpt-30")
  assert not os.path.exists(os.path.join(directory, "ckpt-40_temp"))
  assert [r["step"] for r in rows(tmp_path)] == [0, 10, 20, 30, 40]


def test_no_intact_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
  from experiments.training import loop  # pylint: disable=g-import-not-at-top
  _checkpoint_trainer(tmp_path, num_steps=30).run()
  for number in (10, 20, 30):
    _truncate_data(tmp_path, number)
  before = rows(tmp_path)
  with pytest.raises(loop.NoIntactCheckpointError,
                     match="ckpt-30.*ckpt-20.*ckpt-10"):
    _checkpoint_trainer(tmp_path).run()
  assert rows(tmp_path) == before
  assert not os.path.exists(tmp_path / training.CHECKPOINT_DIR / "damaged")


def test_run_holds_the_logdir_lock(tmp_path):
  from experiments.training import outputs  # pylint: disable=g-import-not-at-top
  with outputs.LogdirLock(str(tmp_path)):
    with pytest.raises(outputs.LogdirInUseError, match="in use"):
      make_trainer(tmp_path, num_steps=10).run()
  make_trainer(tmp_path, num_steps=10).run()
  with open(tmp_path / outputs.LOCK_FILE) as f:
    assert f.read() == ""  # Released.


def test_metrics_log_ignores_a_torn_last_line(tmp_path):
  from experiments.training import outputs  # pylint: disable=g-import-not-at-top
  log = training.MetricsLog(str(tmp_path))
  log.write({"step": 0, "m": 1.0})
  with open(log.path, "a") as f:
    f.write('{"step": 10, "m"')  # An append cut by a kill.
  assert [r["step"] for r in log.rows()] == [0]
  log.write({"step": 10, "m": 2.0})
  assert [r["step"] for r in log.rows()] == [0, 10]
  with open(log.path) as f:
    lines = f.readlines()
  with open(log.path, "w") as f:
    f.writelines(["garbage\n"] + lines)
  with pytest.raises(outputs.DamagedOutputError, match="line 1"):
    log.rows()
