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

from experiments import benchmark
from experiments import official_style
from tf_discrete import bernoulli
from tf_discrete import categorical

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cases(family, layers=(1,)):
  return benchmark.cases([family], ["*"], ["linear"], list(layers),
                         ["estimator_samples"])


def test_cases_cover_every_estimator_and_skip_invalid_runs():
  bernoulli_cases = _cases("bernoulli", layers=(1, 4))
  names = {c.estimator for c in bernoulli_cases if c.num_layers == 1}
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
  for key in ("ms_per_step", "bare_ms", "ratio_to_bare", "peak_memory_mb"):
    assert math.isfinite(row[key]) and row[key] > 0, (key, row)
  layers = case.num_layers
  per_layer = (bernoulli if case.family == "bernoulli" else categorical).get(
      case.estimator).evaluations(None, [20, 10] if case.family ==
                                  "categorical" else [200])
  extra = 1 if (case.decoder_grad == "separate_sample"
                or case.family == "categorical") else 0
  assert row["evaluations"] == per_layer * layers + extra
  if case.has_official_yardstick:
    assert row["official_ms"] > 0 and row["speedup_vs_official"] > 0


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
  assert "| case | ms/step | official-style ms/step | speed-up |" in proc.stdout


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
