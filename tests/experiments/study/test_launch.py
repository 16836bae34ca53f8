"""Tests of experiments/study/launch.py: run states, locks, reuse, records,
launching (with a fake binary, in-process) and, end to end, the command
``python -m experiments.study`` on the synthetic data set with tiny step
counts (the real binaries: three short trainings, under two minutes on a
busy 2-core machine)."""

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest

from experiments.study import launch
from experiments.study import records
from experiments.study import settings

REPO = settings.REPO_ROOT
RECORD_FILES = {"metrics.jsonl", "summary.json", "config.json",
                "machine.json", "status.json"}


def _read(path):
  return records.read_json(path)


# --------------------------------------------------------------------------
# Run states from run directories.


def test_state_uses_the_row_at_the_target_step(make_options, fabricate,
                                               named):
  runs = settings.study_runs(make_options())
  run = named(runs, "binary/synthetic-linear-disarm-seed0")
  fabricate(run, 40)  # Trained beyond the target of 20.
  state = launch.load_state(run)
  assert state.complete and state.final_row()["step"] == 20
  assert state.steps_done == 40
  assert state.wall_time() == 60.0
  assert state.status == "done"


def test_states_of_unfinished_runs(make_options, fabricate, named):
  runs = settings.study_runs(make_options())
  failed = named(runs, "binary/synthetic-linear-arm-seed0")
  fabricate(failed, 10, summary=False, returncode=1)
  assert launch.load_state(failed).status == "failed"
  stopped = named(runs, "binary/synthetic-linear-rloo-seed0")
  fabricate(stopped, 10, summary=False, returncode=None)
  assert launch.load_state(stopped).status == "incomplete"
  pending = named(runs, "binary/synthetic-linear-disarm-seed1")
  assert launch.load_state(pending).status == "pending"
  assert not launch.load_state(pending).exists


def test_a_cut_off_launch_ends_where_the_next_launch_starts(
    make_options, fabricate, named):
  run = named(settings.study_runs(make_options()),
              "binary/synthetic-linear-disarm-seed0")
  # Rows at wall times 1000..1020 (fabricated), all from the second launch,
  # which restarted from step 0; the first was cut off without an end.
  fabricate(run, 20)
  machine_path = os.path.join(run.path, records.MACHINE_FILE)
  (finished,) = _read(machine_path)["launches"]
  cut_off = {"start_time": 400.0, "machine": finished["machine"],
             "command": finished["command"], "git_commit": "def" * 14}

  def wall_time_of_both_launches():
    with open(machine_path, "w") as f:
      json.dump({"launches": [cut_off, finished]}, f)
    return launch.load_state(run).wall_time()

  assert wall_time_of_both_launches() == 60.0
  # A cut-off launch with rows of its own counts up to its last row.
  cut_off["start_time"] = 990.0
  finished["start_time"] = 1015.0
  assert wall_time_of_both_launches() == (1010.0 - 990.0) + 45.0


# --------------------------------------------------------------------------
# Records.


def test_records_of_finished_and_unfinished_runs(make_options, fabricate,
                                                 named, tmp_path):
  options = make_options()
  runs = settings.study_runs(options)
  done = named(runs, "binary/synthetic-linear-disarm-seed0")
  partial = named(runs, "binary/synthetic-linear-arm-seed0")
  fabricate(done, 20, elbo=-90.0)
  fabricate(partial, 10, summary=False, returncode=None)
  changed = launch.collect_records(runs, options)
  assert changed == [done.name, partial.name]
  record = tmp_path / "docs" / "records" / "binary" / done.short_name
  # The compact record only: no checkpoints, event files or run.log.
  assert set(os.listdir(record)) == RECORD_FILES
  assert [r["step"] for r in records.read_rows(str(record))] == [0, 10, 20]
  assert _read(record / "summary.json")["steps"] == 20
  assert _read(record / "config.json")["evaluations_per_layer"] == 2
  (entry,) = _read(record / "machine.json")["launches"]
  assert entry["command"] == done.command("python")
  assert _read(record / "status.json") == {
      "run": done.name, "module": settings.BERNOULLI, "target_steps": 20,
      "steps_done": 20, "complete": True, "status": "done",
      "reused_from": None}
  status = _read(tmp_path / "docs" / "records" / "binary" /
                 partial.short_name / "status.json")
  assert status["status"] == "incomplete" and status["steps_done"] == 10
  assert not status["complete"]
  # The report reads the same states back from the records.
  state = records.load_record(done, options.records_dir)
  assert state.complete and state.final_row()["train_elbo"] == -90.0
  assert state.launches and state.wall_time() == 60.0
  assert records.load_record(partial, options.records_dir).status == (
      "incomplete")
  # Unchanged runs are not rewritten.
  assert launch.collect_records(runs, options) == []
  # A record holding more steps than the run directory is kept.
  shutil.rmtree(done.path)
  fabricate(done, 10, summary=False)
  assert launch.collect_records(runs, options) == []
  assert _read(record / "status.json")["steps_done"] == 20


# --------------------------------------------------------------------------
# Reuse and locks.


def test_reuse_only_exactly_matching_finished_runs(make_options, fabricate,
                                                   named, tmp_path,
                                                   monkeypatch):
  options = make_options(reuse_from=(str(tmp_path / "outside"),))
  runs = settings.study_runs(options)
  run = named(runs, "binary/synthetic-nonlinear-disarm-seed0")
  defaults = {"dataset": "dynamic_mnist", "grad_type": "disarm",
              "encoder_type": "linear", "genmo_lr": 1e-4, "num_pairs": None,
              "demean_input": False, "initialize_with_bias": False,
              "num_layers": 1, "seed": 0, "num_steps": 10, "logdir": None,
              "eval_every": 5, "checkpoint_every": 5, "log_every": 5,
              "new_flag": "x"}
  monkeypatch.setattr(launch, "module_defaults",
                      lambda module, python=None: dict(defaults))

  def outside(name, steps, **changes):
    config = {**defaults, **run.flag_values(), "logdir": name,
              "eval_every": 10_000, "estimator": "disarm", **changes}
    config.pop("new_flag")  # An older run without a newer flag: default.
    fake = settings.Run(run.variant, run.dataset, run.seed, steps, 10,
                        str(tmp_path / "outside" / name))
    fabricate(fake, steps, launches=False, config=False)
    with open(os.path.join(fake.path, records.CONFIG_FILE), "w") as f:
      json.dump(config, f)

  outside("short", 10)  # Too few steps.
  outside("other_lr", 20, genmo_lr=3e-4)
  outside("other_seed", 20, seed=7)  # Seeds of the study: 0, 1, 2.
  assert launch.find_reusable(runs, options) == {}
  outside("same", 30)
  found = launch.find_reusable(runs, options)
  # The paper table's run has the same flags here (20 steps for all).
  same = str(tmp_path / "outside" / "same")
  assert found == {run.name: same,
                   "paper/synthetic-nonlinear-disarm-seed0": same}
  state = launch.load_state(run, found[run.name])
  assert state.complete and state.reused and state.final_row()["step"] == 20
  assert launch.run_study(dataclasses.replace(options,
                                              report_only=True)) == 0
  status = _read(os.path.join(options.records_dir, "binary",
                              run.short_name, "status.json"))
  assert status["reused_from"] == same
  text = open(options.report).read()
  assert "done, 20 (reused: made outside the study)" in text
  assert "n/r: not recorded" in text
  assert str(tmp_path) not in text
  # A run the study has started itself is never replaced by an outside one.
  fabricate(run, 10, summary=False)
  assert run.name not in launch.find_reusable(runs, options)


def _dead_pid():
  process = subprocess.Popen([sys.executable, "-c", "pass"])
  process.wait()
  return process.pid


def test_locked_runs_are_left_alone(make_options, named, capsys):
  options = make_options(dry_run=True, only=("binary/*-linear-disarm-seed0",
                                             "binary/*-linear-arm-seed0"))
  runs = settings.study_runs(options)
  held = named(runs, "binary/synthetic-linear-disarm-seed0")
  stale = named(runs, "binary/synthetic-linear-arm-seed0")
  for run, pid in ((held, os.getpid()), (stale, _dead_pid())):
    os.makedirs(run.path)
    with open(os.path.join(run.path, records.LOCK_FILE), "w") as f:
      json.dump({"pid": pid, "host": socket.gethostname()}, f)
  assert launch.run_study(options) == 0
  out = capsys.readouterr().out
  assert f"skip (running in another process): {held.name}" in out
  assert f"# {stale.name}: pending" in out
  assert "--logdir=" + stale.logdir in out
  assert launch.load_state(held).status == "running"
  assert not os.path.exists(options.report)  # A dry run writes nothing.
  assert not os.path.exists(options.records_dir)


def test_a_lock_of_a_live_binary_holds(make_options, named):
  runs = settings.study_runs(make_options())
  run = named(runs, "binary/synthetic-linear-disarm-seed0")
  os.makedirs(run.path)
  # A live process whose command line names the run's logdir.
  child = subprocess.Popen([sys.executable, "-c",
                            "import time; time.sleep(30)", run.logdir])
  try:
    with open(os.path.join(run.path, records.LOCK_FILE), "w") as f:
      json.dump({"pid": _dead_pid(), "child_pid": child.pid,
                 "host": socket.gethostname()}, f)
    assert launch.lock_holder(run) is not None
  finally:
    child.kill()
    child.wait()
  assert launch.lock_holder(run) is None


def test_only_code_changes_mark_a_launch_as_modified(tmp_path):
  def git(*args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t",
                    "-c", "commit.gpgsign=false", *args],
                   cwd=tmp_path, check=True, capture_output=True)

  (tmp_path / "docs").mkdir()
  (tmp_path / "docs" / "results.md").write_text("report\n")
  (tmp_path / "train.py").write_text("code\n")
  git("init", "-q")
  git("add", ".")
  git("commit", "-qm", "start")
  head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path,
                        capture_output=True, text=True).stdout.strip()
  assert launch.git_commit(str(tmp_path)) == head
  # The driver rewrites the report while runs train: not a code change.
  (tmp_path / "docs" / "results.md").write_text("report, rewritten\n")
  assert launch.git_commit(str(tmp_path)) == head
  (tmp_path / "train.py").write_text("code, edited\n")
  assert launch.git_commit(str(tmp_path)) == head + "+local changes"


def test_concurrent_runs_share_the_cores():
  env = launch.child_environment({"PATH": "/bin"}, jobs=2, cores=8)
  assert env["TF_NUM_INTRAOP_THREADS"] == env["TF_NUM_INTEROP_THREADS"] == "4"
  assert env["PATH"] == "/bin"
  env = launch.child_environment({}, jobs=3, cores=2)
  assert env["TF_NUM_INTRAOP_THREADS"] == "1"  # Never zero (TF's "all").
  # The caller's own setting wins.
  env = launch.child_environment({"TF_NUM_INTRAOP_THREADS": "7"}, jobs=1,
                                 cores=2)
  assert env["TF_NUM_INTRAOP_THREADS"] == "7"
  assert env["TF_NUM_INTEROP_THREADS"] == "2"


# --------------------------------------------------------------------------
# Launching, with a fake binary (no TensorFlow).

FAKE_BINARY = textwrap.dedent('''
    """A stand-in for a VAE binary: metrics rows, summary and config."""
    import json, os, sys
    flags = {}
    for arg in sys.argv[1:]:
      name, _, value = arg[2:].partition("=")
      flags[name] = value if _ else True
    if flags["grad_type"] == "fail":
      sys.exit(3)
    logdir, steps = flags["logdir"], int(flags["num_steps"])
    every = int(flags["eval_every"])
    os.makedirs(os.path.join(logdir, "checkpoints"), exist_ok=True)
    path = os.path.join(logdir, "metrics.jsonl")
    start = 0
    if os.path.exists(path):
      with open(path) as f:
        start = max(json.loads(l)["step"] for l in f) + every
      print("Resumed at", start - every)
    seed = int(flags["seed"])
    offset = {"a": 0.0, "b": -1.0}.get(flags["grad_type"], 0.0)
    with open(path, "a") as f:
      for step in range(start, steps + 1, every):
        f.write(json.dumps({"step": step, "wall_time": 1e9 + step,
                            "train_elbo": -100 + offset + step / 10 + seed,
                            "test_iwae": -90 + offset + seed,
                            "grad_variance": 0.1 * (2 + offset) + seed / 100,
                            "train_time_sec": step / 100}) + "\\n")
    with open(os.path.join(logdir, "config.json"), "w") as f:
      json.dump({**flags, "evaluations_per_layer": 2}, f)
    with open(os.path.join(logdir, "summary.json"), "w") as f:
      json.dump({"steps": steps, "ms_per_step": 10.0}, f)
''')


@pytest.fixture
def toy_study(tmp_path, monkeypatch):
  """A one-table study of the fake binary: arms a and b, 2 seeds."""
  (tmp_path / "fakebin").mkdir()
  (tmp_path / "fakebin" / "fake_vae.py").write_text(FAKE_BINARY)
  monkeypatch.setenv("PYTHONPATH", str(tmp_path / "fakebin"))
  group = settings.Group("toy", "A toy table", ("d",), 20, 10, "Toy runs.",
                         seeds=(0, 1))
  variants = tuple(settings.Variant("toy", "s", arm, arm.upper(),
                                    "fake_vae", {"grad_type": arm})
                   for arm in ("a", "b", "fail"))
  claim = settings.Claim("A beats B", "toy paper", "toy", "a", "b",
                         "train_elbo")
  monkeypatch.setattr(settings, "GROUPS", (group,))
  monkeypatch.setattr(settings, "STUDY", variants)
  monkeypatch.setattr(settings, "CLAIMS", (claim,))
  return settings.Options(root=str(tmp_path / "runs"),
                          report=str(tmp_path / "docs" / "results.md"),
                          steps={"toy": 20}, reuse_from=(), jobs=2)


def _launch_count(run):
  with open(os.path.join(run.path, records.RUN_LOG)) as f:
    return f.read().count(launch.LAUNCH_HEADER)


def test_launches_record_every_run_and_report(toy_study, capsys):
  options = dataclasses.replace(toy_study, only=("toy/*-a-*", "toy/*-b-*"))
  assert launch.run_study(options) == 0
  out = capsys.readouterr().out
  assert out.count("launch: ") == 4
  runs = settings.study_runs(options)
  for run in runs:
    record = os.path.join(options.records_dir, "toy", run.short_name)
    if run.variant.arm == "fail":
      assert not os.path.exists(run.path) and not os.path.exists(record)
      continue
    assert set(os.listdir(record)) == RECORD_FILES
    (entry,) = _read(os.path.join(record, "machine.json"))["launches"]
    assert entry["command"] == run.command(options.python)
    assert entry["returncode"] == 0 and entry["end_step"] == 20
    assert entry["start_step"] == 0 and entry["machine"]["cpu_model"]
    cores = len(os.sched_getaffinity(0))
    assert entry["threads"] == {v: str(max(1, cores // 2))
                                for v in launch.THREAD_VARIABLES}
    assert _read(os.path.join(record, "status.json"))["status"] == "done"
    assert not os.path.exists(os.path.join(run.path, records.LOCK_FILE))
  text = open(options.report).read()
  # a - b = +1 per seed (identical differences: no t-test).
  assert "- **confirmed** — A beats B (toy paper): holds in 1 of 1" in text
  assert "per-seed differences are identical" in text
  assert "Pending (not started): d-s-fail (seeds 0, 1)." in text
  report_bytes = open(options.report, "rb").read()

  # Again: nothing to launch, the records and the report stay the same.
  assert launch.run_study(options) == 0
  out = capsys.readouterr().out
  assert "launch: " not in out and out.count("skip (done, 20 steps)") == 4
  assert open(options.report, "rb").read() == report_bytes

  # Run directories gone (a fresh machine): the finished records hold.
  os.rename(options.root, options.root + ".away")
  assert launch.run_study(options) == 0
  out = capsys.readouterr().out
  assert "launch: " not in out
  assert out.count("skip (done in its record, 20 steps)") == 4
  assert open(options.report, "rb").read() == report_bytes
  assert launch.run_study(dataclasses.replace(options, dry_run=True)) == 0
  assert "python" not in capsys.readouterr().out
  shutil.rmtree(options.root, ignore_errors=True)
  os.rename(options.root + ".away", options.root)  # Runs as they were.

  # A raised target continues one run; its record follows.
  raised = dataclasses.replace(options, steps={"toy": 30},
                               only=("toy/d-s-a-seed0",))
  assert launch.run_study(raised) == 0
  run = next(r for r in settings.study_runs(raised)
             if r.name == "toy/d-s-a-seed0")
  assert _launch_count(run) == 2
  record = os.path.join(options.records_dir, "toy", run.short_name)
  assert [r["step"] for r in records.read_rows(record)] == [0, 10, 20, 30]
  second = _read(os.path.join(record, "machine.json"))["launches"][1]
  assert second["start_step"] == 20 and second["end_step"] == 30
  text = open(options.report).read()
  assert "In progress (started, not finished): d-s-a-seed1 at step 20 of 30" \
      in text

  # A failing run: exit status 1, a record marked failed.
  failing = dataclasses.replace(options, only=("toy/d-s-fail-seed0",))
  assert launch.run_study(failing) == 1
  status = _read(os.path.join(options.records_dir, "toy",
                              "d-s-fail-seed0", "status.json"))
  assert status["status"] == "failed" and not status["complete"]
  assert "**stopped** at 0 / 20 (exit code 3)" in open(options.report).read()


# --------------------------------------------------------------------------
# End to end: the command, on the synthetic data set.


def _command(tmp_path, *args):
  base = [sys.executable, "-m", "experiments.study",
          f"--root={tmp_path / 'runs'}",
          f"--report={tmp_path / 'docs' / 'results.md'}",
          "--datasets=synthetic", "--eval_every=10", "--reuse_from=",
          "--steps_multilayer=20", "--steps_multisample=20",
          "--steps_categorical=20", "--steps_paper=20"]
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
  result = subprocess.run(base + list(args), cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout + result.stderr
  return result.stdout


def _launches(path):
  with open(os.path.join(path, records.RUN_LOG)) as f:
    return f.read().count(launch.LAUNCH_HEADER)


def test_command_runs_resumes_records_and_reports(tmp_path):
  if not os.path.exists(os.path.join(REPO, "experiments",
                                     "bernoulli_vae.py")):
    pytest.fail("experiments/bernoulli_vae.py is missing")
  only = "--only=binary/*-linear-disarm-seed0,categorical/*-disarm_sb-*"
  out = _command(tmp_path, "--steps_binary=20", only)
  root = tmp_path / "runs"
  recs = tmp_path / "docs" / "records"
  disarm = str(root / "binary" / "synthetic-linear-disarm-seed0")
  cat = str(root / "categorical" / "synthetic-20x10-disarm_sb-seed0")
  for path in (disarm, cat):
    summary = _read(os.path.join(path, "summary.json"))
    assert summary["steps"] == 20, path
    assert [r["step"] for r in records.read_rows(path)] == [0, 10, 20]
    assert _launches(path) == 1
    machine = _read(os.path.join(path, "machine.json"))
    (entry,) = machine["launches"]
    assert entry["returncode"] == 0 and entry["end_step"] == 20
    assert entry["machine"]["cpu_model"] and entry["machine"]["tensorflow"]
    assert "--num_steps=20" in entry["command"]
    assert not os.path.exists(os.path.join(path, records.LOCK_FILE))
    # Its record: the compact copy, made when the run finished.
    group, name = path.split(os.sep)[-2:]
    record = recs / group / name
    assert set(os.listdir(record)) == RECORD_FILES
    assert _read(record / "machine.json") == machine
    assert records.read_rows(str(record)) == records.read_rows(path)
    config = _read(record / "config.json")
    assert config["logdir"] == path and config["seed"] == 0
    evaluations = ("evaluations" if group == "categorical" else
                   "evaluations_per_layer")
    assert config[evaluations] >= 2
    assert _read(record / "status.json")["status"] == "done"
  assert out.count("launch: ") == 2
  assert not os.path.exists(root / "binary" / "synthetic-linear-arm-seed0")
  report_text = (tmp_path / "docs" / "results.md").read_text()
  assert report_text.count("| done, 20 |") == 2
  assert (tmp_path / "docs" / "figures" / "categorical_train_elbo.png"
         ).exists()

  # A second invocation skips the finished runs.
  mtime = os.path.getmtime(os.path.join(disarm, "summary.json"))
  out = _command(tmp_path, "--steps_binary=20", only)
  assert "launch: " not in out
  assert out.count("skip (done, 20 steps)") == 2
  assert _launches(disarm) == _launches(cat) == 1
  assert os.path.getmtime(os.path.join(disarm, "summary.json")) == mtime

  # A raised target continues the run from its checkpoint.
  before = records.read_rows(disarm)
  out = _command(tmp_path, "--steps_binary=30",
                 "--only=binary/*-linear-disarm-seed0")
  assert out.count("launch: ") == 1
  assert _launches(disarm) == 2
  after = records.read_rows(disarm)
  assert [r["step"] for r in after] == [0, 10, 20, 30]
  assert after[:3] == before  # Kept, not recomputed by a fresh start.
  second = _read(os.path.join(disarm, "machine.json"))["launches"][1]
  assert second["start_step"] == 20 and second["end_step"] == 30
  assert "Resumed" in open(os.path.join(disarm, "run.log")).read()
  record = recs / "binary" / "synthetic-linear-disarm-seed0"
  assert len(_read(record / "machine.json")["launches"]) == 2

  # Report only, with the categorical run now short of a raised target.
  raised = ("--steps_binary=30", "--steps_categorical=30", "--report_only")
  _command(tmp_path, *raised)
  assert _launches(cat) == 1
  report_text = (tmp_path / "docs" / "results.md").read_text()
  # Run name -> its rows (a name like synthetic-20x10-disarm_sb-seed0
  # stands in several tables; the first is the categorical table's).
  rows = {}
  for line in report_text.splitlines():
    if line.startswith("| synthetic-"):
      rows.setdefault(line.split(" | ")[0][2:], line)
  assert "done, 30" in rows["synthetic-linear-disarm-seed0"]
  assert "**in progress** at 20 / 30" in rows[
      "synthetic-20x10-disarm_sb-seed0"]
  assert ("In progress (started, not finished): synthetic-20x10-disarm_sb-"
          "seed0 at step 20 of 30 (stopped).") in report_text
  assert "**pending**" in rows["synthetic-linear-arm-seed0"]
  assert str(tmp_path) not in report_text

  # Without the run directories: the same report from the records alone.
  made = {p: open(tmp_path / "docs" / p, "rb").read()
          for p in ["results.md"] + [
              os.path.join("figures", f)
              for f in os.listdir(tmp_path / "docs" / "figures")]}
  shutil.rmtree(root)
  _command(tmp_path, *raised)
  for p, data in made.items():
    assert open(tmp_path / "docs" / p, "rb").read() == data, p
