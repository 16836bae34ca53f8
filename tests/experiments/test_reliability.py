"""Runs that survive faults, tested on the binary as a process.

One writer per logdir (the lock, with real processes), damaged checkpoints
(fallback to the newest intact one, or a clear stop), exact resumption
after SIGKILLs at random points, and user errors reported in one line with
exit status 2. All runs are short runs on the synthetic data set; one
uninterrupted run (the ``uninterrupted`` fixture) is what the others must
reproduce value for value.
"""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from experiments.training import outputs
from tests import support

BINARY = "experiments.bernoulli_vae"
NUM_STEPS = 80
# 2,000 synthetic training images in batches of 50: an epoch is 40 steps,
# so the runs cross epoch boundaries; rows and checkpoints every 10 steps.
# Without XLA a process starts faster; its runs are as deterministic.
FLAGS = ("--dataset=synthetic", f"--num_steps={NUM_STEPS}", "--eval_every=10",
         "--checkpoint_every=10", "--log_every=10", "--num_eval_samples=2",
         "--nojit_compile")
# Row fields that measure time, not the run.
WALL_CLOCK = ("wall_time", "eval_time_sec", "train_time_sec", "steps_per_sec")
USER_ERROR_STATUS = 2


def command(logdir, *flags):
  return [sys.executable, "-m", BINARY, *FLAGS, f"--logdir={logdir}", *flags]


def run(logdir, *flags, env=None, timeout=300):
  """Runs the binary to its end; the CompletedProcess."""
  return subprocess.run(command(logdir, *flags), cwd=support.ROOT,
                        env={**support.ENV, **(env or {})},
                        capture_output=True, text=True, timeout=timeout)


def start(logdir, *flags, env=None):
  """Starts the binary; the Popen (stderr to a file beside the logdir)."""
  log = open(f"{logdir}.stderr", "w")  # pylint: disable=consider-using-with
  return subprocess.Popen(command(logdir, *flags), cwd=support.ROOT,
                          env={**support.ENV, **(env or {})},
                          stdout=subprocess.DEVNULL, stderr=log)


def read_rows(logdir):
  try:
    with open(os.path.join(logdir, outputs.METRICS_FILE)) as f:
      return [json.loads(line) for line in f]
  except FileNotFoundError:
    return []


def run_values(logdir):
  """The rows of a run without their wall-clock fields."""
  return [{k: v for k, v in row.items() if k not in WALL_CLOCK}
          for row in read_rows(logdir)]


def fatal_lines(stderr):
  return [line for line in stderr.splitlines() if line.startswith("FATAL")]


def assert_user_error(result, *fragments):
  """Exit status 2, one FATAL line holding ``fragments``, no traceback."""
  assert result.returncode == USER_ERROR_STATUS, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  (line,) = fatal_lines(result.stderr)
  for fragment in fragments:
    assert fragment in line, line
  return line


def truncate(path):
  """Cuts a file to half its size (a write that never reached the disk)."""
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def data_files(logdir, number):
  return [os.path.join(logdir, "checkpoints", name)
          for name in os.listdir(os.path.join(logdir, "checkpoints"))
          if name.startswith(f"ckpt-{number}.data-")]


def wait_for(condition, timeout, what):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if condition():
      return
    time.sleep(0.05)
  raise AssertionError(f"timed out waiting for {what}")


def lock_record(logdir):
  try:
    with open(os.path.join(logdir, outputs.LOCK_FILE)) as f:
      return json.loads(f.read() or "null")
  except (OSError, ValueError):
    return None


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """``(logdir, rows without wall-clock fields)`` of the run uninterrupted.

  A copy of the logdir is kept beside it for :func:`finished_run`.
  """
  base = tmp_path_factory.mktemp("reliability")
  logdir = str(base / "run")
  result = run(logdir)
  assert result.returncode == 0, result.stderr[-3000:]
  assert [r["step"] for r in read_rows(logdir)] == list(
      range(0, NUM_STEPS + 1, 10))
  shutil.copytree(logdir, str(base / "pristine"))
  return logdir, run_values(logdir)


@pytest.fixture
def finished_run(uninterrupted):
  """The uninterrupted run's logdir as it was at its end (a run resumes
  only in its own logdir, which the flags name)."""
  logdir, _ = uninterrupted
  shutil.rmtree(logdir)
  shutil.copytree(os.path.join(os.path.dirname(logdir), "pristine"), logdir)
  return logdir


# --------------------------------------------------------------------------
# Exact resumption.
# --------------------------------------------------------------------------


def test_run_killed_at_random_points_writes_the_uninterrupted_rows(
    tmp_path, uninterrupted):
  """SIGKILLed in training, in evaluation, while writing metrics.jsonl and
  while saving a checkpoint (the fault-injection hook), and at a random
  instant from outside, then restarted each time: the rows are those of
  the uninterrupted run, value for value."""
  seed = int(os.environ.get("RELIABILITY_SEED", random.randrange(10**6)))
  rng = random.Random(seed)
  # At most 2 events into each session, so that every kill happens before
  # the run's end.
  kills = [(point, rng.randint(1, 2)) for point in outputs.KILL_POINTS]
  rng.shuffle(kills)
  context = f"seed {seed}, kills {kills}"
  logdir = str(tmp_path / "run")
  for point, count in kills:
    result = run(logdir, env={outputs.KILL_AT_ENV: f"{point}:{count}"})
    assert result.returncode == -signal.SIGKILL, (
        context, point, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, (context, result.stderr[-3000:])
  killed_at_steps = [r["step"] for r in read_rows(logdir)]

  # A kill from outside, by polling the logdir: a random instant just after
  # the next row is written (in its TensorBoard write, its checkpoint or
  # the next training steps). The kills above progressed 50 steps at most,
  # so that row is at step 60 at most and the run is not over.
  rows_before = len(killed_at_steps)
  process = start(logdir)
  try:
    wait_for(lambda: len(read_rows(logdir)) > rows_before
             or process.poll() is not None, 240, "a new row")
    time.sleep(rng.uniform(0, 0.05))
    process.send_signal(signal.SIGKILL)
  finally:
    process.wait()
  assert process.returncode == -signal.SIGKILL, context

  final = run(logdir)
  assert final.returncode == 0, (context, final.stderr[-3000:])
  assert run_values(logdir) == uninterrupted[1], (context, killed_at_steps)


# --------------------------------------------------------------------------
# Damaged checkpoints.
# --------------------------------------------------------------------------


def test_damaged_newest_checkpoint_falls_back_to_an_intact_one(
    finished_run, uninterrupted):
  logdir = finished_run
  for path in data_files(logdir, NUM_STEPS):
    truncate(path)
  result = run(logdir)
  assert result.returncode == 0, result.stderr[-3000:]
  warnings = [line for line in result.stderr.splitlines()
              if "Damaged checkpoints" in line]
  assert len(warnings) == 1, result.stderr[-3000:]
  assert f"ckpt-{NUM_STEPS}.data-00000-of-00001" in warnings[0]
  assert f"Resuming from ckpt-{NUM_STEPS - 10}" in warnings[0]
  assert (f"at step {NUM_STEPS - 10} (dropped 1 metrics rows"
          in result.stdout), result.stdout[-3000:]
  assert run_values(logdir) == uninterrupted[1]
  # The damaged files are kept aside; the state file names intact ones.
  assert os.listdir(os.path.join(logdir, "checkpoints", "damaged"))
  with open(os.path.join(logdir, "checkpoints", "checkpoint")) as f:
    assert f'model_checkpoint_path: "ckpt-{NUM_STEPS}"' in f.read()


def test_no_intact_checkpoint_stops_with_a_clear_error(finished_run):
  logdir = finished_run
  for number in (NUM_STEPS - 20, NUM_STEPS - 10, NUM_STEPS):
    for path in data_files(logdir, number):
      truncate(path)
  rows = read_rows(logdir)
  result = run(logdir)
  assert_user_error(result, "No intact checkpoint", f"ckpt-{NUM_STEPS}",
                    f"ckpt-{NUM_STEPS - 20}")
  assert read_rows(logdir) == rows  # Never starts over.


# --------------------------------------------------------------------------
# One writer per logdir.
# --------------------------------------------------------------------------


def test_second_process_is_refused_and_a_dead_holder_is_taken_over(
    tmp_path):
  logdir = str(tmp_path / "run")
  long_run = ("--num_steps=1000000", "--eval_every=1000",
              "--checkpoint_every=1000")
  first = start(logdir, *long_run)
  try:
    wait_for(lambda: read_rows(logdir) or first.poll() is not None, 240,
             "the first run's first row")
    assert first.poll() is None
    second = run(logdir, *long_run, timeout=240)
    record = lock_record(logdir)
    assert record["pid"] == first.pid
    assert record["host"] == socket.gethostname()
    assert_user_error(second, "in use by another run", f"pid {first.pid} ",
                      f"host {record['host']}", record["started"])
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()
  # The kernel released the dead holder's flock; its record is still there.
  assert lock_record(logdir)["pid"] == first.pid
  third = run(logdir, "--num_steps=10")
  assert third.returncode == 0, third.stderr[-3000:]
  assert f"from pid {first.pid} on host" in third.stderr
  assert "ended without releasing it" in third.stderr
  assert lock_record(logdir) is None  # Released cleanly: emptied.


def test_lock_in_process(tmp_path):
  """The lock itself: exclusive, emptied on release, dead holders."""
  with outputs.LogdirLock(str(tmp_path)) as lock:
    assert lock.locked and lock_record(tmp_path)["pid"] == os.getpid()
    # flock conflicts between two opens, even in one process.
    with pytest.raises(outputs.LogdirInUseError, match=f"pid {os.getpid()}"):
      outputs.LogdirLock(str(tmp_path)).acquire()
  assert lock_record(tmp_path) is None
  # A record left by a process of this host that has ended: taken over.
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True)
  path = os.path.join(tmp_path, outputs.LOCK_FILE)
  with open(path, "w") as f:
    json.dump({"pid": int(dead.stdout), "host": socket.gethostname(),
               "started": "earlier"}, f)
  with outputs.LogdirLock(str(tmp_path)):
    assert lock_record(tmp_path)["pid"] == os.getpid()
  # A record of a live process although the lock is free: the filesystem
  # does not honour locks; the run refuses and leaves the record.
  alive = subprocess.Popen([sys.executable, "-c", "import time; "
                            "time.sleep(60)"])
  try:
    record = {"pid": alive.pid, "host": socket.gethostname(),
              "started": "now"}
    with open(path, "w") as f:
      json.dump(record, f)
    with pytest.raises(outputs.LogdirInUseError, match="does not honour"):
      outputs.LogdirLock(str(tmp_path)).acquire()
    assert lock_record(tmp_path) == record
  finally:
    alive.kill()
    alive.wait()


# --------------------------------------------------------------------------
# User errors: one line, exit status 2.
# --------------------------------------------------------------------------


def test_user_errors_are_one_line_with_status_2(tmp_path, finished_run,
                                               uninterrupted):
  empty = tmp_path / "manual"
  (empty / "mnist").mkdir(parents=True)
  other_flags = finished_run
  commands = {
      "missing data": [
          sys.executable, "-m", BINARY, "--dataset=dynamic_mnist",
          f"--manual_dir={empty}", f"--data_dir={tmp_path / 'tfds'}",
          f"--logdir={tmp_path / 'missing'}"],
      "traceback shown": [
          sys.executable, "-m", BINARY, "--dataset=dynamic_mnist",
          f"--manual_dir={empty}", f"--data_dir={tmp_path / 'tfds2'}",
          f"--logdir={tmp_path / 'missing2'}", "--show_traceback"],
      "other flags": command(other_flags, "--genmo_lr=0.001"),
      "flags that do not fit": command(tmp_path / "x", "--shared_randomness"),
      "flag out of range": command(tmp_path / "y", "--num_steps=0"),
  }
  processes = {
      name: subprocess.Popen(args, cwd=support.ROOT, env=support.ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
      for name, args in commands.items()}
  results = {}
  for name, process in processes.items():
    stdout, stderr = process.communicate(timeout=300)
    results[name] = subprocess.CompletedProcess(
        commands[name], process.returncode, stdout, stderr)

  assert_user_error(results["missing data"], "train-images-idx3-ubyte.gz",
                    str(empty))
  assert_user_error(results["other flags"], "other settings",
                    "genmo_lr: 0.0001 -> 0.001")
  assert_user_error(results["flags that do not fit"], "shared_randomness")
  assert_user_error(results["flag out of range"], "num_steps")
  shown = results["traceback shown"]
  assert shown.returncode == USER_ERROR_STATUS
  assert "Traceback" in shown.stderr and "DatasetNotFoundError" in shown.stderr
  assert len(fatal_lines(shown.stderr)) == 1
  # Nothing of the refused run was written.
  assert run_values(other_flags) == uninterrupted[1]
