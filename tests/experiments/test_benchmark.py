"""experiments.benchmark: every estimator's compiled step builds and runs.

Not a timing test: it checks that the training step of the binaries' own
code path compiles with ``jit_compile=True`` for every estimator (what the
speed depends on, and what a TPU needs), and that the benchmark's bare pass,
rows and table are well formed.
"""

import json
import math
import os
import subprocess
import sys

from absl import flags
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from tests import support
from experiments import benchmark
from experiments import official_style
from experiments import xla_profile
from tf_discrete import bernoulli
from tf_discrete import categorical

ROOT = support.ROOT


def _cases(family, layers=(1,)):
  return benchmark.cases([family], ["*"], ["linear"], list(layers),
                         ["estimator_samples"])


def test_cases_cover_every_estimator_and_skip_invalid_runs():
  bernoulli_cases = _cases("bernoulli", layers=(1, 4))
  names = {c.estimator for c in bernoulli_cases if c.num_layers == 1}
  # Every estimator, learned control variates included.
  assert names == set(bernoulli.available())
  deep = {c.estimator for c in bernoulli_cases if c.num_layers == 4}
  # Multi-sample bounds are single-layer only (a start-up error otherwise).
  assert "vimco" not in deep and "local_disarm" not in deep
  assert "disarm" in deep
  # disarm_tree needs C a power of 2; the benchmark's C is 10.
  assert ({c.estimator for c in _cases("categorical")}
          == set(categorical.available()) - {"disarm_tree"})


@pytest.mark.parametrize(
    "case", _cases("bernoulli") + _cases("categorical")
    + [benchmark.Case("bernoulli", "disarm", "nonlinear", 2),
       benchmark.Case("bernoulli", "arm", "linear", 1, "separate_sample")],
    ids=lambda c: c.label)
def test_compiled_step_runs(case):
  row = benchmark.measure(case, dataset="synthetic", manual_dir=None,
                          steps=2, repeats=1, time_eval=False)
  for key in ("ms_per_step", "bare_ms", "ratio_to_bare", "bare_update_ms",
              "ratio_to_bare_update", "peak_memory_mb"):
    assert math.isfinite(row[key]) and row[key] > 0, (key, row)
  layers = case.num_layers
  per_layer = (bernoulli if case.family == "bernoulli" else categorical).get(
      case.estimator).evaluations(None, [20, 10] if case.family ==
                                  "categorical" else [200])
  # The separate sample's pass; the categorical binary's default protocol.
  extra = 1 if (case.decoder_grad == "separate_sample"
                or (case.family == "categorical"
                    and case.decoder_grad is None)) else 0
  assert row["evaluations"] == per_layer * layers + extra
  if case.has_yardsticks:
    assert row["official_ms"] > 0 and row["speedup_vs_official"] > 0
    assert row["rloo_ms"] > 0
    assert row["ratio_to_rloo"] == pytest.approx(
        row["ms_per_step"] / row["rloo_ms"])
  else:
    assert "rloo_ms" not in row


def _synthetic_trainer(tmp_path, estimator="disarm"):
  case = benchmark.Case("bernoulli", estimator, "linear")
  values = case.flag_values("synthetic", None, str(tmp_path))
  trainer = benchmark.bernoulli_vae.build_trainer(values)
  x = trainer.train_step.batch(tf.constant(0, tf.int64), tf.constant([0, 1]))
  return trainer, x


def test_bare_pass_returns_the_last_gradient_and_leaves_weights(tmp_path):
  trainer, x = _synthetic_trainer(tmp_path)
  model = trainer.model
  before = [v.numpy().copy() for v in model.trainable_variables]
  grads = benchmark.bare_loop("bernoulli", model, x)(tf.constant(3))
  with tf.GradientTape() as tape:
    loss = -tf.reduce_mean(benchmark._bernoulli_bare_elbo(
        model, x, tf.constant([2, 0])))
  # In the order of the parameter groups.
  variables = [v for group in model.parameter_groups().values()
               for v in group]
  expected = tape.gradient(loss, variables)
  assert len(grads) == len(expected) == len(model.trainable_variables)
  for g, e in zip(grads, expected):
    np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-4, atol=1e-6)
  for b, v in zip(before, model.trainable_variables):
    np.testing.assert_array_equal(b, v.numpy())


def test_bare_update_applies_fresh_optimizers_to_every_group(tmp_path):
  trainer, x = _synthetic_trainer(tmp_path)
  updates = benchmark.fresh_updates(trainer)
  assert set(updates) == set(trainer.optimizers)
  before = [v.numpy().copy() for v in trainer.model.trainable_variables]
  benchmark.bare_loop("bernoulli", trainer.model, x, updates)(tf.constant(2))
  for name, (optimizer, group) in updates.items():
    assert optimizer is not trainer.optimizers[name]
    assert optimizer.get_config() == trainer.optimizers[name].get_config()
    assert int(optimizer.iterations.numpy()) == 2
    assert int(trainer.optimizers[name].iterations.numpy()) == 0
    assert [v.name for v in group] == [v.name for v in trainer.groups[name]]
  moved = [np.any(b != v.numpy())
           for b, v in zip(before, trainer.model.trainable_variables)]
  assert all(moved)


def test_decoder_floor_sums_the_decoder_over_every_evaluated_row(tmp_path):
  trainer, _ = _synthetic_trainer(tmp_path)
  trainer.evaluator.eval_rows = 700
  model = trainer.model
  expected = 0.0
  for eval_set in trainer.eval_sets:
    num_images = eval_set.images.shape[0]
    chunk = max(1, min(num_images, 700 // eval_set.num_samples))
    rows = chunk * eval_set.num_samples
    for c in range(-(-num_images // chunk)):
      codes = (np.arange(rows)[:, None] + np.arange(200)[None] + c) % 2
      expected += float(tf.reduce_sum(model.decoder_logits(
          0, tf.constant(codes, tf.float32))))
  for jit_compile in (True, False):
    assert float(benchmark.decoder_floor(trainer, jit_compile)()) == (
        pytest.approx(expected, rel=1e-4))


def test_default_steps_are_one_call_of_a_real_run():
  # Synthetic data: 2,000 images, batch 50, so a real run's calls stop at
  # each 40-step epoch.
  row = benchmark.measure(benchmark.Case("bernoulli", "reinforce", "linear"),
                          dataset="synthetic", manual_dir=None, steps=0,
                          repeats=1, time_eval=False)
  assert row["timed_steps"] == 40


def test_official_style_step_trains_every_group():
  """The yardstick is a working DisARM step: all three parameter groups
  move, the ELBO is finite and the EMA variance is positive."""
  model = official_style.OfficialStyleDisarm(
      "nonlinear", np.full([784], 0.2, np.float32), latent_dim=8)
  images = tf.constant(np.random.RandomState(0).rand(16, 784), tf.float32)
  before = [v.numpy().copy() for v in (model.encoder.trainable_variables
                                       + model.decoder.trainable_variables
                                       + [model.prior_logits])]
  for i in range(2):
    elbo, variance = model.step(images, tf.constant([i, 7]))
  after = (model.encoder.trainable_variables + model.decoder.trainable_variables
           + [model.prior_logits])
  assert all(np.any(b != a.numpy()) for b, a in zip(before, after))
  assert np.isfinite(elbo.numpy()) and elbo.numpy() < 0
  assert variance.numpy() > 0


def test_table_and_json_from_the_command(tmp_path):
  out = tmp_path / "bench.json"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.benchmark", "--dataset=synthetic",
       "--families=bernoulli", "--estimators=disarm", "--encoder_types=linear",
       "--num_layers=1", "--steps=3", "--repeats=1", f"--json={out}"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "| bernoulli disarm linear L1 | 2 |" in proc.stdout
  assert "Machine:" in proc.stdout
  rows = json.loads(out.read_text())["rows"]
  assert len(rows) == 1 and rows[0]["eval_sec"] > 0
  assert rows[0]["eval_floor_sec"] > 0 and rows[0]["eval_floor_graph_sec"] > 0
  assert ("| case | ms/step | RLOO K=2 ms/step | DisARM/RLOO "
          "| official-style ms/step | speed-up |") in proc.stdout
  assert "| bare+update ms | step/(bare+update) |" in proc.stdout


def test_importing_defines_no_global_flag():
  # The VAE binaries' tests share the process (absl DuplicateFlagError).
  for name in ("num_layers", "dataset", "estimators", "steps", "json"):
    assert name not in flags.FLAGS, name


def test_unknown_family_is_a_usage_error():
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.benchmark", "--families=gaussian"],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  assert "--families must be among" in proc.stderr


_HLO = """HloModule m
%body (p: (s32[], f32[4])) -> (s32[], f32[4]) {
  %p = (s32[], f32[4]{0}) parameter(0)
  %MatMul.7 = f32[4]{0} dot(f32[4,4]{1,0} %a, f32[4]{0} %b), lhs_contracting_dims={1}
  ROOT %tuple.1 = (s32[], f32[4]{0}) tuple(s32[] %i, f32[4]{0} %MatMul.7)
}
ENTRY %main {
  %while.3 = (s32[], f32[4]{0}) while((s32[], f32[4]{0}) %t), body=%body
  %add_fusion = f32[4]{0} fusion(f32[4]{0} %x), kind=kLoop, calls=%f
}
"""


def test_hlo_opcodes_reads_names_and_opcodes_including_tuple_shapes():
  opcodes = xla_profile.hlo_opcodes(_HLO)
  assert opcodes["MatMul.7"] == "dot"
  assert opcodes["tuple.1"] == "tuple"
  assert opcodes["while.3"] == "while"
  assert opcodes["add_fusion"] == "fusion"
  assert opcodes["p"] == "parameter"


def test_event_durations_sum_every_thread(tmp_path):
  space = xplane_pb2.XSpace()
  plane = space.planes.add(name="/host:CPU")
  plane.event_metadata[1].name = "MatMul.7"
  plane.event_metadata[2].name = "add_fusion"
  for thread, durations in enumerate([(3e9, 1e9), (2e9,)]):
    line = plane.lines.add(id=thread)
    for metadata_id, ps in zip((1, 2), durations):
      line.events.add(metadata_id=metadata_id, duration_ps=int(ps))
  path = tmp_path / "t.xplane.pb"
  path.write_bytes(space.SerializeToString())
  durations = xla_profile.event_durations(str(path))
  assert durations == pytest.approx({"MatMul.7": 5e-3, "add_fusion": 1e-3})


def test_with_trace_flag_appends_once():
  env = xla_profile.with_trace_flag({"XLA_FLAGS": "--xla_foo=1"})
  assert env["XLA_FLAGS"] == f"--xla_foo=1 {xla_profile.TRACE_FLAG}"
  assert xla_profile.with_trace_flag(env) == env
  assert xla_profile.with_trace_flag({})["XLA_FLAGS"] == xla_profile.TRACE_FLAG


def test_untraced_breakdown_says_how_to_trace():
  empty = xla_profile.Breakdown(wall_ms=1.0, per_opcode_ms={}, top=[])
  assert not empty.traced
  assert xla_profile.TRACE_FLAG in empty.summary()


def test_profile_dir_breaks_the_step_down_by_opcode(tmp_path):
  out, traces = tmp_path / "bench.json", tmp_path / "profile"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  env.pop("XLA_FLAGS", None)  # The command must add the trace flag itself.
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.benchmark", "--dataset=synthetic",
       "--families=bernoulli", "--estimators=rloo", "--encoder_types=linear",
       "--num_layers=1", "--steps=5", "--repeats=1", "--noeval",
       f"--profile_dir={traces}", f"--json={out}"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "step profile, per step: wall" in proc.stdout
  profile = json.loads(out.read_text())["rows"][0]["profile"]
  for name in ("step", "bare"):
    found = profile[name]
    assert xla_profile.Breakdown(**found).traced
    # The linear VAE's pass is matmuls: forward and two weight gradients.
    assert found["per_opcode_ms"]["dot"] > 0
    assert all(op != "while" for _, op, _ in found["top"])
    assert list((traces / "bernoulli_rloo_linear_L1" / name).rglob(
        "*.xplane.pb"))


def test_layer_path_loop_trains_and_its_table():
  """The Keras-layer yardstick runs model.fit on the README's functional VAE
  (its loss changes as it trains) and the table reads its rows."""
  x = tf.constant((np.random.RandomState(0).rand(8, 16) < 0.5)
                  .astype(np.float32))
  run = benchmark.layer_path_loop(x, steps=3, steps_per_execution=3,
                                  learning_rate=1e-2)
  first, second = run(), run()
  assert np.isfinite(first) and first != second
  table = benchmark.format_layer_path_table([
      dict(case="c", ms_per_step=2.0, layers_ms=6.0, layers_all_ms=3.0),
      dict(case="other", ms_per_step=1.0)])
  assert "| c | 2.00 | 6.00 | 3.00 | 1.50 |" in table
  assert "other" not in table
  assert benchmark.format_layer_path_table([dict(case="x")]) == ""
