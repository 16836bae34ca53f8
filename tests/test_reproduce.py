"""Tests of the study driver experiments/reproduce.py.

The pure parts (study table, selection, claims, report, reuse, locks) run
in-process on fabricated run directories; one end-to-end test runs the
command on the synthetic data set with tiny step counts (three short
trainings and a continuation, about two minutes on a busy 2-core machine).
"""

import dataclasses
import json
import os
import socket
import subprocess
import sys

import pytest

from experiments import reproduce

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _options(tmp_path, **kwargs):
  steps = {g.name: 20 for g in reproduce.GROUPS}
  defaults = dict(root=str(tmp_path / "runs"),
                  report=str(tmp_path / "docs" / "results.md"),
                  steps=steps, eval_every=10, datasets=("synthetic",),
                  reuse_from=())
  defaults.update(kwargs)
  return reproduce.Options(**defaults)


# --------------------------------------------------------------------------
# The study table.


def test_study_has_the_four_tables_with_unique_runs():
  runs = reproduce.study_runs(reproduce.Options(reuse_from=()))
  names = [r.name for r in runs]
  assert len(names) == len(set(names))
  by_group = {g.name: [r for r in runs if r.group == g.name]
              for g in reproduce.GROUPS}
  # 3 estimators x 3 data sets x 2 networks; 2 x 2; 2 x 2; 5.
  assert {k: len(v) for k, v in by_group.items()} == {
      "binary": 18, "multilayer": 4, "multisample": 4, "categorical": 5}
  assert {r.dataset for r in by_group["binary"]} == {
      "dynamic_mnist", "fashion_mnist", "omniglot"}
  for group in ("multilayer", "multisample", "categorical"):
    assert {r.dataset for r in by_group[group]} == {"dynamic_mnist"}
  for run in runs:
    command = run.command("python")
    assert "--demean_input" in command and "--initialize_with_bias" in command
    assert f"--num_steps={run.steps}" in command
    assert command[2] == ("experiments.categorical_vae"
                          if run.group == "categorical"
                          else "experiments.binary_vae")
  assert {r.steps for r in by_group["binary"]} == {100_000}
  assert {r.steps for r in by_group["categorical"]} == {50_000}


def test_every_study_command_passes_the_binaries_flag_checks():
  # Imported here: the binaries bring TensorFlow; the driver does not.
  from experiments import binary_vae  # pylint: disable=g-import-not-at-top
  from experiments import categorical_vae  # pylint: disable=g-import-not-at-top
  binaries = {reproduce.BINARY: binary_vae,
              reproduce.CATEGORICAL: categorical_vae}
  for run in reproduce.study_runs(reproduce.Options(reuse_from=())):
    binary = binaries[run.variant.module]
    values = binary.default_flag_values()
    unknown = set(run.flag_values()) - set(values)
    assert not unknown, (run.name, unknown)
    values.update(run.flag_values())
    binary.check_flags(values)  # Raises ValueError for a misfit.


def test_multisample_arms_have_equal_evaluations():
  variants = [v for v in reproduce.STUDY if v.group == "multisample"]
  for setting in {v.setting for v in variants}:
    pair = {v.arm: v for v in variants if v.setting == setting}
    assert set(pair) == {"local_disarm", "vimco"}
    assert (pair["local_disarm"].flags["num_pairs"] ==
            pair["vimco"].flags["num_pairs"])
    assert pair["local_disarm"].evaluations == pair["vimco"].evaluations


def test_every_claim_compares_arms_of_its_group():
  for claim in reproduce.CLAIMS:
    arms = {v.arm for v in reproduce.STUDY if v.group == claim.group}
    assert claim.arm in arms and claim.other in arms, claim


def test_select_by_glob_and_group():
  runs = reproduce.study_runs(reproduce.Options(reuse_from=()))
  assert {r.group for r in reproduce.select(runs, ["multilayer"])} == {
      "multilayer"}
  picked = reproduce.select(runs, ["binary/omniglot-*-disarm-*",
                                   "categorical/*arsm_plus*"])
  assert sorted(r.name for r in picked) == [
      "binary/omniglot-linear-disarm-seed0",
      "binary/omniglot-nonlinear-disarm-seed0",
      "categorical/dynamic_mnist-20x10-arsm_plus-seed0"]
  assert reproduce.select(runs, []) == runs
  assert not reproduce.select(runs, ["nothing*"])


def test_seeds_and_datasets_override(tmp_path):
  runs = reproduce.study_runs(_options(tmp_path, seeds=(0, 3)))
  assert {r.dataset for r in runs} == {"synthetic"}
  assert len(runs) == 2 * (6 + 4 + 4 + 5)
  assert all(r.eval_every == 10 and r.steps == 20 for r in runs)
  assert any(r.name.endswith("-seed3") for r in runs)


# --------------------------------------------------------------------------
# Claims on fabricated numbers.


def _row(**metrics):
  return {"step": 100, **metrics}


def test_claims_confirmed_contradicted_mixed_and_missing():
  claims = (
      reproduce.Claim("elbo", "p", "binary", "disarm", "arm", "train_elbo"),
      reproduce.Claim("var", "p", "binary", "disarm", "arm", "grad_variance",
                      higher_is_better=False),
      reproduce.Claim("rloo", "p", "binary", "disarm", "rloo", "train_elbo"),
  )
  settings = [("binary", "mnist", "linear"), ("binary", "mnist", "nonlinear"),
              ("binary", "omniglot", "linear")]
  finals = {
      ("binary", "mnist", "linear", "disarm"): [
          _row(train_elbo=-100.0, grad_variance=1.0)],
      ("binary", "mnist", "linear", "arm"): [
          _row(train_elbo=-101.0, grad_variance=2.0)],
      ("binary", "mnist", "nonlinear", "disarm"): [
          _row(train_elbo=-90.0, grad_variance=0.5)],
      ("binary", "mnist", "nonlinear", "arm"): [
          _row(train_elbo=-95.0, grad_variance=0.1)],
      ("binary", "mnist", "linear", "rloo"): [_row(train_elbo=-99.0)],
  }
  elbo, var, rloo = reproduce.evaluate_claims(finals, settings, claims)
  assert elbo.verdict == "confirmed"
  assert [c.outcome for c in elbo.comparisons] == [
      "confirms", "confirms", "not available"]
  assert "2 of 2" in elbo.summary() and "1 setting not finished" in (
      elbo.summary())
  assert var.verdict == "mixed"  # Lower in one setting, higher in the other.
  assert [c.outcome for c in var.comparisons][:2] == [
      "confirms", "contradicts"]
  assert rloo.verdict == "contradicted"
  none = reproduce.evaluate_claims({}, settings, claims)
  assert {r.verdict for r in none} == {"not yet available"}


def test_claims_average_seeds_and_tolerance():
  settings = [("categorical", "mnist", "20x10")]
  competitive = reproduce.Claim("c", "p", "categorical", "disarm_sb",
                                "rloo_k2", "train_elbo", tolerance=1.0)
  beats = reproduce.Claim("b", "p", "categorical", "disarm_sb", "rloo_k2",
                          "train_elbo")
  finals = {
      ("categorical", "mnist", "20x10", "disarm_sb"): [
          _row(train_elbo=-101.0), _row(train_elbo=-100.0)],  # mean -100.5
      ("categorical", "mnist", "20x10", "rloo_k2"): [
          _row(train_elbo=-99.8)],
  }
  result_c, result_b = reproduce.evaluate_claims(finals, settings,
                                                 (competitive, beats))
  assert result_c.verdict == "confirmed"  # 0.7 nats below: within 1 nat.
  assert result_b.verdict == "contradicted"
  assert result_c.comparisons[0].arm_values == [-101.0, -100.0]
  finals[("categorical", "mnist", "20x10", "disarm_sb")] = [
      _row(train_elbo=-101.5)]
  (result_c,) = reproduce.evaluate_claims(finals, settings, (competitive,))
  assert result_c.verdict == "contradicted"  # 1.7 nats below.


def test_claims_ignore_missing_or_nan_metrics():
  settings = [("binary", "d", "linear")]
  claim = reproduce.Claim("v", "p", "binary", "disarm", "arm",
                          "grad_variance", higher_is_better=False)
  finals = {("binary", "d", "linear", "disarm"): [_row(train_elbo=-1.0)],
            ("binary", "d", "linear", "arm"): [
                _row(grad_variance=float("nan"))]}
  (result,) = reproduce.evaluate_claims(finals, settings, (claim,))
  assert result.verdict == "not yet available"


# --------------------------------------------------------------------------
# Report from fabricated run directories.


def _fabricate(run, steps_done, *, summary=True, elbo=-100.0, variance=1.0,
               launches=True):
  os.makedirs(run.path, exist_ok=True)
  rows = [{"step": s, "wall_time": 1000.0 + s, "train_elbo": elbo - 1 + (
      s / max(steps_done, 1)), "test_iwae": elbo + 5, "grad_variance":
           variance, "train_time_sec": s * 0.01}
          for s in range(0, steps_done + 1, run.eval_every)]
  with open(os.path.join(run.path, reproduce.METRICS_FILE), "w") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")
    f.write('{"step": 99999, "torn')  # A torn last line is skipped.
  if summary:
    with open(os.path.join(run.path, reproduce.SUMMARY_FILE), "w") as f:
      json.dump({"steps": steps_done, "ms_per_step": 10.0,
                 "wall_time_sec": 5.0}, f)
  if launches:
    machine = {"host": "h", "cpu_model": "Test CPU", "usable_cores": 2,
               "cpu_cores": 2, "gpus": [], "tensorflow": "9.9"}
    with open(os.path.join(run.path, reproduce.MACHINE_FILE), "w") as f:
      json.dump({"launches": [{"start_time": 1000.0, "end_time": 1060.0,
                               "returncode": 0, "machine": machine}]}, f)


def _run(runs, name):
  return next(r for r in runs if r.name == name)


def test_report_only_marks_incomplete_runs_and_computes_claims(tmp_path):
  options = _options(tmp_path)
  runs = reproduce.study_runs(options)
  disarm = _run(runs, "binary/synthetic-linear-disarm-seed0")
  arm = _run(runs, "binary/synthetic-linear-arm-seed0")
  rloo = _run(runs, "binary/synthetic-linear-rloo-seed0")
  # DisARM finished with the lower ELBO; ARM finished; RLOO stopped at 10.
  _fabricate(disarm, 20, elbo=-120.0, variance=0.5)
  _fabricate(arm, 20, elbo=-110.0, variance=2.0)
  _fabricate(rloo, 10, summary=False, elbo=-50.0, variance=0.01)
  assert reproduce.run_study(
      dataclasses.replace(options, report_only=True)) == 0
  text = open(options.report).read()
  lines = {l.split(" | ")[2]: l for l in text.splitlines()
           if l.startswith("| synthetic | linear |")}
  assert "done, 20" in lines["DisARM"] and "−120.00" in lines["DisARM"]
  assert "**incomplete** at 10 / 20" in lines["RLOO (K=2)"]
  assert "*−50.00*†" in lines["RLOO (K=2)"]  # Partial values are marked.
  assert "M1" in lines["DisARM"] and "| 60 s |" in lines["DisARM"]
  assert "Test CPU, 2 cores, no GPU, TensorFlow 9.9" in text
  claims = [l for l in text.splitlines() if l.startswith("- **")]
  by_text = {c.split(" — ")[1].split(" (")[0]: c for c in claims}
  # Computed from the numbers: DisARM's ELBO is lower than ARM's here.
  elbo_vs_arm = by_text["DisARM reaches a higher train ELBO than ARM"]
  assert elbo_vs_arm.startswith("- **contradicted so far**")
  var_vs_arm = by_text["DisARM's encoder gradient variance is lower than "
                       "ARM's"]
  assert var_vs_arm.startswith("- **confirmed so far**")
  # The unfinished RLOO run is not used.
  assert by_text["DisARM reaches a higher train ELBO than RLOO"].startswith(
      "- **not yet available**")
  assert "**pending** (not started)" in text
  assert "theirs" in text and "1,000,000" in text
  assert os.path.exists(tmp_path / "docs" / "figures" /
                        "binary_train_elbo.png")
  assert "](figures/binary_train_elbo.png)" in text
  assert "Figures appear here once runs have written metrics." in text


def test_report_uses_the_row_at_the_target_step(tmp_path):
  options = _options(tmp_path)
  runs = reproduce.study_runs(options)
  run = _run(runs, "binary/synthetic-linear-disarm-seed0")
  _fabricate(run, 40)  # Trained beyond the target of 20.
  state = reproduce.load_state(run)
  assert state.complete and state.final_row()["step"] == 20
  assert state.steps_done == 40
  assert state.wall_time() == 60.0


# --------------------------------------------------------------------------
# Reuse and locks.


def test_reuse_only_exactly_matching_finished_runs(tmp_path, monkeypatch):
  options = _options(tmp_path, reuse_from=(str(tmp_path / "outside"),))
  runs = reproduce.study_runs(options)
  run = _run(runs, "binary/synthetic-nonlinear-disarm-seed0")
  defaults = {"dataset": "dynamic_mnist", "grad_type": "disarm",
              "encoder_type": "linear", "genmo_lr": 1e-4, "num_pairs": None,
              "demean_input": False, "initialize_with_bias": False,
              "num_layers": 1, "seed": 0, "num_steps": 10, "logdir": None,
              "eval_every": 5, "checkpoint_every": 5, "log_every": 5,
              "new_flag": "x"}
  monkeypatch.setattr(reproduce, "module_defaults",
                      lambda module, python=None: dict(defaults))

  def outside(name, steps, **changes):
    config = {**defaults, **run.flag_values(), "logdir": name,
              "eval_every": 10_000, "estimator": "disarm", **changes}
    config.pop("new_flag")  # An older run without a newer flag: default.
    fake = reproduce.Run(run.variant, run.dataset, run.seed, steps, 10,
                         str(tmp_path / "outside" / name))
    _fabricate(fake, steps)
    with open(os.path.join(fake.path, reproduce.CONFIG_FILE), "w") as f:
      json.dump(config, f)

  outside("short", 10)  # Too few steps.
  outside("other_lr", 20, genmo_lr=3e-4)
  outside("other_seed", 20, seed=1)
  assert reproduce.find_reusable(runs, options) == {}
  outside("same", 30)
  found = reproduce.find_reusable(runs, options)
  assert found == {run.name: str(tmp_path / "outside" / "same")}
  state = reproduce.load_state(run, found[run.name])
  assert state.complete and state.reused and state.final_row()["step"] == 20
  text = reproduce.write_report(options, runs)
  assert "outside/same` (reused)" in text
  # A run the study has started itself is never replaced by an outside one.
  _fabricate(run, 10, summary=False)
  assert reproduce.find_reusable(runs, options) == {}


def _dead_pid():
  process = subprocess.Popen([sys.executable, "-c", "pass"])
  process.wait()
  return process.pid


def test_locked_runs_are_left_alone(tmp_path, capsys):
  options = _options(tmp_path, dry_run=True,
                     only=("binary/*-linear-disarm-*",
                           "binary/*-linear-arm-*"))
  runs = reproduce.study_runs(options)
  held = _run(runs, "binary/synthetic-linear-disarm-seed0")
  stale = _run(runs, "binary/synthetic-linear-arm-seed0")
  for run, pid in ((held, os.getpid()), (stale, _dead_pid())):
    os.makedirs(run.path)
    with open(os.path.join(run.path, reproduce.LOCK_FILE), "w") as f:
      json.dump({"pid": pid, "host": socket.gethostname()}, f)
  assert reproduce.run_study(options) == 0
  out = capsys.readouterr().out
  assert f"skip (running in another process): {held.name}" in out
  assert f"# {stale.name}: pending" in out
  assert "--logdir=" + stale.logdir in out
  assert reproduce.load_state(held).status == "running"
  assert not os.path.exists(options.report)  # A dry run writes nothing.


# --------------------------------------------------------------------------
# End to end: the command, on the synthetic data set.


def _command(tmp_path, *args):
  base = [sys.executable, "-m", "experiments.reproduce",
          f"--root={tmp_path / 'runs'}",
          f"--report={tmp_path / 'docs' / 'results.md'}",
          "--datasets=synthetic", "--eval_every=10", "--reuse_from=",
          "--steps_multilayer=20", "--steps_multisample=20",
          "--steps_categorical=20"]
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
  result = subprocess.run(base + list(args), cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout + result.stderr
  return result.stdout


def _launches(path):
  with open(os.path.join(path, reproduce.RUN_LOG)) as f:
    return f.read().count(reproduce.LAUNCH_HEADER)


def _rows(path):
  return reproduce.read_rows(path)


def test_command_runs_resumes_and_reports(tmp_path):
  only = ("--only=binary/*-linear-disarm-*,binary/*-linear-arm-*,"
          "categorical/*-disarm_sb-*")
  out = _command(tmp_path, "--steps_binary=20", only)
  root = tmp_path / "runs"
  disarm = str(root / "binary" / "synthetic-linear-disarm-seed0")
  arm = str(root / "binary" / "synthetic-linear-arm-seed0")
  cat = str(root / "categorical" / "synthetic-20x10-disarm_sb-seed0")
  for path in (disarm, arm, cat):
    summary = reproduce.read_json(os.path.join(path, "summary.json"))
    assert summary["steps"] == 20, path
    assert [r["step"] for r in _rows(path)] == [0, 10, 20]
    assert _launches(path) == 1
    machine = reproduce.read_json(os.path.join(path, "machine.json"))
    (launch,) = machine["launches"]
    assert launch["returncode"] == 0 and launch["end_step"] == 20
    assert launch["machine"]["cpu_model"] and launch["machine"]["tensorflow"]
    assert "--num_steps=20" in launch["command"]
    assert not os.path.exists(os.path.join(path, reproduce.LOCK_FILE))
  assert out.count("launch: ") == 3
  assert not os.path.exists(root / "binary" / "synthetic-linear-rloo-seed0")
  report = (tmp_path / "docs" / "results.md").read_text()
  table_rows = [l for l in report.splitlines() if l.startswith("| synthetic")]
  assert sum("| done, 20 |" in l for l in table_rows) == 3
  assert (tmp_path / "docs" / "figures" / "categorical_train_elbo.png"
         ).exists()

  # A second invocation skips the finished runs.
  mtime = os.path.getmtime(os.path.join(disarm, "summary.json"))
  out = _command(tmp_path, "--steps_binary=20", only)
  assert "launch: " not in out
  assert out.count("skip (done, 20 steps)") == 3
  assert _launches(disarm) == _launches(arm) == 1
  assert os.path.getmtime(os.path.join(disarm, "summary.json")) == mtime

  # A raised target continues the run from its checkpoint.
  before = _rows(disarm)
  out = _command(tmp_path, "--steps_binary=30",
                 "--only=binary/*-linear-disarm-*")
  assert out.count("launch: ") == 1
  assert _launches(disarm) == 2
  after = _rows(disarm)
  assert [r["step"] for r in after] == [0, 10, 20, 30]
  assert after[:3] == before  # Kept, not recomputed by a fresh start.
  second = reproduce.read_json(os.path.join(disarm, "machine.json"))[
      "launches"][1]
  assert second["start_step"] == 20 and second["end_step"] == 30
  assert "Resumed" in open(os.path.join(disarm, "run.log")).read()

  # Report only, with ARM now short of the raised target.
  _command(tmp_path, "--steps_binary=30", "--report_only")
  assert _launches(arm) == 1
  report = (tmp_path / "docs" / "results.md").read_text()
  rows = {l.split(" | ")[2]: l for l in report.splitlines()
          if l.startswith("| synthetic | linear |")}
  assert "done, 30" in rows["DisARM"]
  assert "**incomplete** at 20 / 30" in rows["ARM"]
  assert "**pending**" in rows["RLOO (K=2)"]
