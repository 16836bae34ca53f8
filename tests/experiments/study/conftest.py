"""Fixtures of the study driver's tests: options on a temporary folder and
fabricated run directories (what the binaries and the driver write)."""

import json
import os

import pytest

from experiments.study import records
from experiments.study import settings

MACHINE = {"host": "h", "cpu_model": "Test CPU", "usable_cores": 2,
           "cpu_cores": 2, "gpus": [], "tensorflow": "9.9"}


@pytest.fixture
def make_options(tmp_path):
  """Options with every run under ``tmp_path``: synthetic data, 20 steps,
  evaluations every 10, report in ``tmp_path/docs``, no reuse."""

  def make(**kwargs):
    steps = {g.name: 20 for g in settings.GROUPS}
    defaults = dict(root=str(tmp_path / "runs"),
                    report=str(tmp_path / "docs" / "results.md"),
                    steps=steps, eval_every=10, datasets=("synthetic",),
                    reuse_from=())
    defaults.update(kwargs)
    return settings.Options(**defaults)

  return make


def fabricate_run(run, steps_done, *, summary=True, elbo=-100.0,
                  variance=1.0, launches=True, returncode=0, config=True,
                  extras=True, eval_every=None, row_metrics=None):
  """Writes what a binary and the driver leave in ``run``'s directory.

  The train ELBO rises linearly to ``elbo`` at ``steps_done``; the test
  bound is ``elbo + 5``; the gradient variance is ``variance``; every row
  also has ``row_metrics`` (key -> value). With
  ``extras``, also a checkpoint, an event file and run.log (never copied
  into a record).
  """
  os.makedirs(run.path, exist_ok=True)
  every = eval_every or run.eval_every
  rows = [{"step": s, "wall_time": 1000.0 + s,
           "train_elbo": elbo - 1 + s / max(steps_done, 1),
           "test_iwae": elbo + 5, "grad_variance": variance,
           "train_time_sec": s * 0.01, **(row_metrics or {})}
          for s in range(0, steps_done + 1, every)]
  with open(os.path.join(run.path, records.METRICS_FILE), "w") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")
    f.write('{"step": 99999, "torn')  # A torn last line is skipped.
  if summary:
    with open(os.path.join(run.path, records.SUMMARY_FILE), "w") as f:
      json.dump({"steps": steps_done, "ms_per_step": 10.0,
                 "wall_time_sec": 5.0}, f)
  if config:
    with open(os.path.join(run.path, records.CONFIG_FILE), "w") as f:
      json.dump({**run.flag_values(), "evaluations_per_layer": 2}, f)
  if launches:
    launch = {"start_time": 1000.0, "end_time": 1060.0,
              "returncode": returncode, "machine": MACHINE,
              "command": run.command("python"), "git_commit": "abc" * 14}
    with open(os.path.join(run.path, records.MACHINE_FILE), "w") as f:
      json.dump({"launches": [launch]}, f)
  if extras:
    os.makedirs(os.path.join(run.path, "checkpoints"), exist_ok=True)
    with open(os.path.join(run.path, "checkpoints", "ckpt-1.index"),
              "w") as f:
      f.write("x")
    with open(os.path.join(run.path, "events.out.tfevents.1.h"), "w") as f:
      f.write("x")
    with open(os.path.join(run.path, records.RUN_LOG), "w") as f:
      f.write("log\n")


@pytest.fixture
def fabricate():
  return fabricate_run


def run_named(runs, name):
  return next(r for r in runs if r.name == name)


@pytest.fixture
def named():
  return run_named
