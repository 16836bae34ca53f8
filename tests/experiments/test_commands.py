"""Every command the README shows, run on fixture data, checked by what it
prints or writes."""

import json
import os

import numpy as np
import pytest

from experiments import estimator_variance
from tests import support

SHARED_DATA = (os.environ.get("TF_DISCRETE_MANUAL_DIR") or
               os.path.join(os.path.dirname(support.ROOT), "shared", "data"))


def _rows(logdir):
  with open(os.path.join(logdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


def test_variance_tables_in_the_docs_are_the_commands_output():
  expected = {family: estimator_variance.block(family, 100_000, 0)
              for family in estimator_variance.FAMILIES}
  for doc in estimator_variance.DOCS:
    with open(os.path.join(support.ROOT, doc)) as f:
      blocks = estimator_variance.blocks_in(f.read())
    assert set(blocks) == set(estimator_variance.FAMILIES), doc
    for family, text in blocks.items():
      assert text == expected[family], (
          f"{doc}'s {family} variance table is stale; regenerate it with "
          f"`{estimator_variance.COMMAND} "
          f"--write={','.join(estimator_variance.DOCS)}`")


def test_main_job_prints_progress_and_where_its_outputs_are(tmp_path):
  """The README's main command (the official DisARM flags), shortened, on
  the synthetic set: progress lines, evaluations, the closing summary."""
  logdir = str(tmp_path / "run")
  result = support.run_module(
      "experiments.bernoulli_vae", "--dataset=synthetic", "--grad_type=disarm",
      "--encoder_type=nonlinear", "--demean_input", "--initialize_with_bias",
      "--num_steps=40", "--eval_every=20", "--log_every=20",
      "--num_eval_samples=4", f"--logdir={logdir}")
  lines = result.stdout.splitlines()
  assert [l.split()[1] for l in lines if l.startswith("step ")] == [
      "0", "20/40", "20", "40/40", "40"]
  assert lines[-2].startswith("done: 40 steps")
  assert lines[-1].startswith(f"outputs in {logdir}: metrics.jsonl")
  assert len(lines) <= 10 and result.stderr.strip() == "", result.stderr
  assert [r["step"] for r in _rows(logdir)] == [0, 20, 40]
  for name in ("summary.json", "config.json", "curves.png", "checkpoints"):
    assert os.path.exists(os.path.join(logdir, name)), name


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED_DATA, "mnist")),
                    reason="the raw MNIST files are not beside the checkout")
def test_make_demo_command_on_mnist(tmp_path):
  """`make demo`'s command on the real data (few steps, small bound)."""
  logdir = str(tmp_path / "demo")
  result = support.run_module(
      "experiments.bernoulli_vae", "--dataset=dynamic_mnist",
      "--grad_type=disarm", "--encoder_type=nonlinear", "--demean_input",
      "--initialize_with_bias", "--num_steps=400", "--eval_every=200",
      "--log_every=200", "--num_eval_samples=2", f"--logdir={logdir}",
      f"--manual_dir={SHARED_DATA}", f"--data_dir={tmp_path / 'tfds'}")
  rows = _rows(logdir)
  assert [r["step"] for r in rows] == [0, 200, 400]
  assert rows[-1]["train_elbo"] > rows[0]["train_elbo"] + 5
  assert len(result.stdout.splitlines()) <= 10
  assert "Generating" not in result.stderr  # No tfds progress bars.


def test_categorical_command(tmp_path):
  logdir = str(tmp_path / "cat")
  result = support.run_module(
      "experiments.categorical_vae", "--dataset=synthetic",
      "--grad_type=disarm_sb", "--num_variables=4", "--num_categories=4",
      "--one_hot", "--demean_input", "--initialize_with_bias",
      "--num_steps=20", "--eval_every=20", "--num_eval_samples=2",
      "--batch_size=20", f"--logdir={logdir}")
  assert "done: 20 steps" in result.stdout
  assert [r["step"] for r in _rows(logdir)] == [0, 20]


def test_layers_demo_prints_elbo_per_epoch():
  result = support.run_module("experiments.demo", "--epochs=2")
  lines = result.stdout.splitlines()
  assert lines[0].startswith("estimator=disarm")
  assert [l.split()[:2] for l in lines[1:]] == [["epoch", "1"],
                                                 ["epoch", "2"]]
  elbos = [float(l.split()[-1]) for l in lines]
  assert all(np.isfinite(elbos))


def test_data_command_prepares_and_summarizes(tmp_path):
  if not os.path.isdir(os.path.join(SHARED_DATA, "mnist")):
    pytest.skip("the raw MNIST files are not beside the checkout")
  result = support.run_module(
      "experiments.data", "--dataset=dynamic_mnist",
      f"--manual_dir={SHARED_DATA}", f"--data_dir={tmp_path}")
  assert "dynamic_mnist" in result.stdout
  assert "train=(50000, 784)" in result.stdout
  assert "train mean grey level 0.13" in result.stdout


def test_data_command_missing_files_is_one_line(tmp_path):
  result = support.run_module(
      "experiments.data", "--dataset=fashion_mnist",
      f"--manual_dir={tmp_path / 'empty'}", f"--data_dir={tmp_path / 'd'}",
      check=False)
  assert result.returncode == 2
  assert "Traceback" not in result.stderr
  assert len(result.stderr.strip().splitlines()) == 1, result.stderr
