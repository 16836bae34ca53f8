"""How the study is run: one subprocess of a binary per run, resumable.

Every run has its own logdir (``<root>/<group>/<dataset>-<setting>-<arm>-
seed<seed>``) holding the binary's outputs, ``run.log`` (the binary's
stdout and stderr, one header line per launch) and ``machine.json`` (one
entry per launch: exact command line, start, end, exit code, steps, git
commit, load average and the machine: CPU, cores, GPUs, TensorFlow version).

- A run whose ``summary.json`` reports at least its target steps is done and
  skipped, and so is a run whose committed record finished (its run
  directory may be gone: another machine, a cleaned disk); an unfinished one is relaunched with the same command (the binary
  resumes from its last checkpoint; a raised step target continues the run).
- A run held by a live process (``reproduce.lock``: the driver's pid, then
  the binary's) is left alone, so two drivers never train the same run.
- A finished run made outside the study with exactly a study run's settings
  under ``--reuse_from`` is reused instead of being trained again.
- Every run with something on disk gets a record (see :mod:`records`) in the
  records folder: when the driver starts, after every launch, and before
  every report; the report is written from the records alone.
"""

import datetime
import json
import math
import os
import socket
import subprocess
import sys
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence

from experiments import hardware
from experiments.study import records
from experiments.study import report
from experiments.study import settings
from experiments.study.records import RunState
from experiments.study.settings import Options, Run

LAUNCH_HEADER = "=== reproduce: launch"
EXIT_HEADER = "=== reproduce: exit code"
# Command-line fragments of a driver (this one and its predecessor's module
# name, for locks taken by a driver started before the rename).
DRIVER_MODULES = ("experiments.study", "experiments.reproduce")
# Flags of the binaries that may differ between a reused run and the study
# (cadences, data paths, placement): the binaries accept them changed on
# resume too.
NOT_COMPARED = ("num_steps", "logdir", "eval_every", "checkpoint_every",
                "log_every", "data_dir", "manual_dir", "strategy", "tpu",
                "jit_compile")

# TensorFlow's thread pools, sized by the driver for every run it launches
# unless the caller set them.
THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def child_environment(environ: Mapping[str, str], jobs: int,
                      cores: int) -> Dict[str, str]:
  """The environment of a launched binary.

  Each of ``jobs`` concurrent runs gets ``cores // jobs`` threads (at least
  one) in TensorFlow's intra- and inter-op pools: left at their default
  (every core), concurrent runs oversubscribe the machine and a step of
  these small networks takes several times longer. The raw data beside the
  checkout is found as the Makefile finds it.
  """
  env = dict(environ)
  for name in THREAD_VARIABLES:
    env.setdefault(name, str(max(1, cores // jobs)))
  shared = os.path.join(os.path.dirname(settings.REPO_ROOT), "shared",
                        "data")
  if not env.get("TF_DISCRETE_MANUAL_DIR") and os.path.isdir(shared):
    env["TF_DISCRETE_MANUAL_DIR"] = shared
  return env


# --------------------------------------------------------------------------
# Locks and the state of a run directory.


def _pid_alive(pid: int, logdir_arg: Optional[str] = None) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  cmdline = f"/proc/{pid}/cmdline"
  if logdir_arg and os.path.exists(cmdline):
    try:
      with open(cmdline, "rb") as f:
        args = f.read().decode(errors="replace").split("\0")
    except OSError:
      return True
    # A reused pid that is not this run's binary (or a driver) is stale.
    return any(logdir_arg in a for a in args) or any(
        m in a for a in args for m in DRIVER_MODULES)
  return True


def lock_holder(run: Run) -> Optional[Dict[str, Any]]:
  """The live lock of a run (another process trains it), or None."""
  lock = records.read_json(os.path.join(run.path, records.LOCK_FILE))
  if not isinstance(lock, dict):
    return None
  if lock.get("host") != socket.gethostname():
    return lock  # Another machine on a shared disk: assume it is alive.
  pid = lock.get("child_pid") or lock.get("pid")
  if pid and _pid_alive(int(pid), run.logdir if lock.get("child_pid")
                        else None):
    return lock
  return None


def load_state(run: Run, reused_dir: Optional[str] = None) -> RunState:
  """The state of ``run`` in its run directory (or in ``reused_dir``)."""
  source = reused_dir or run.path
  machine = records.read_json(os.path.join(run.path,
                                           records.MACHINE_FILE)) or {}
  return RunState(
      run=run, summary=records.read_json(os.path.join(source,
                                                      records.SUMMARY_FILE)),
      rows=records.read_rows(source),
      launches=[] if reused_dir else list(machine.get("launches", [])),
      running=reused_dir is None and lock_holder(run) is not None,
      config=records.read_json(os.path.join(source, records.CONFIG_FILE)),
      source=source,
      reused_from=settings.logdir_arg(reused_dir) if reused_dir else None)


# --------------------------------------------------------------------------
# Records.


def _write_if_changed(path: str, text: str) -> bool:
  try:
    with open(path) as f:
      if f.read() == text:
        return False
  except OSError:
    pass
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)
  return True


def _json_text(data: Any) -> str:
  return json.dumps(data, indent=1) + "\n"


def write_record(state: RunState, records_dir: str) -> bool:
  """Copies the compact record of a run into ``records_dir``.

  Written: ``metrics.jsonl`` (the rows in step order), ``summary.json`` and
  ``config.json`` (the binary's), ``machine.json`` (the driver's launches)
  and ``status.json``. Nothing is written for a run without any output, nor
  over a record that holds more steps than the run directory (a record from
  another machine, or a run directory that was cleared).

  Returns:
    Whether a file of the record changed.
  """
  if not state.exists:
    return False
  path = records.record_dir(records_dir, state.run)
  old = records.read_json(os.path.join(path, records.STATUS_FILE))
  if isinstance(old, dict) and old.get("steps_done", 0) > state.steps_done:
    return False
  os.makedirs(path, exist_ok=True)
  files = {
      records.METRICS_FILE: "".join(json.dumps(r) + "\n" for r in state.rows),
      records.MACHINE_FILE: _json_text({"launches": state.launches}),
      records.STATUS_FILE: _json_text(state.status_record()),
  }
  if state.summary is not None:
    files[records.SUMMARY_FILE] = _json_text(state.summary)
  if state.config is not None:
    files[records.CONFIG_FILE] = _json_text(state.config)
  changed = False
  for name, text in files.items():
    changed |= _write_if_changed(os.path.join(path, name), text)
  return changed


def collect_records(runs: Sequence[Run], options: Options,
                    reused: Optional[Mapping[str, str]] = None) -> List[str]:
  """Records every run of ``runs`` with something in its run directory (or
  a reused one); returns the names of the runs whose record changed."""
  reused = reused or {}
  changed = []
  for run in runs:
    if write_record(load_state(run, reused.get(run.name)),
                    options.records_dir):
      changed.append(run.name)
  return changed


# --------------------------------------------------------------------------
# Reuse of finished runs made outside the study.


def _same(a: Any, b: Any) -> bool:
  if isinstance(a, bool) or isinstance(b, bool):
    return a is b or (a == b and type(a) is type(b))
  if isinstance(a, (int, float)) and isinstance(b, (int, float)):
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
  return a == b


def matches(run: Run, config: Mapping[str, Any],
            defaults: Mapping[str, Any]) -> bool:
  """Whether a run's config.json has exactly the settings of ``run``.

  Compared: every flag of the binary (its default unless the study sets it)
  except the cadences, the data paths, the placement, the step target and
  the logdir. A flag missing from an older config counts as its default.
  """
  expected = {**defaults, **run.flag_values()}
  for key, value in expected.items():
    if key in NOT_COMPARED:
      continue
    if key not in config:
      if key in defaults and _same(value, defaults[key]):
        continue
      return False
    if not _same(config[key], value):
      return False
  return True


def _candidate_dirs(options: Options) -> List[str]:
  root = os.path.abspath(options.root)
  found = []
  for base in options.reuse_from:
    base = os.path.abspath(base)
    if not os.path.isdir(base):
      continue
    level1 = [os.path.join(base, d) for d in sorted(os.listdir(base))]
    level2 = [os.path.join(d, e) for d in level1 if os.path.isdir(d)
              for e in sorted(os.listdir(d))]
    for path in [base] + level1 + level2:
      path = os.path.abspath(path)
      if (path == root or path.startswith(root + os.sep) or
          not os.path.isfile(os.path.join(path, records.CONFIG_FILE)) or
          not os.path.isfile(os.path.join(path, records.SUMMARY_FILE))):
        continue
      found.append(path)
  return found


def module_defaults(module: str, python: str = sys.executable
                   ) -> Optional[Dict[str, Any]]:
  """A binary's flag defaults, from a subprocess (keeps TF out of here)."""
  code = ("import json, sys; from %s import default_flag_values as d; "
          "json.dump(d(), sys.stdout)" % module)
  try:
    out = subprocess.run([python, "-c", code], cwd=settings.REPO_ROOT,
                         check=True, capture_output=True, text=True,
                         timeout=300)
    return json.loads(out.stdout)
  except (subprocess.SubprocessError, OSError, ValueError) as e:
    print(f"study: cannot read the defaults of {module} ({e}); no runs "
          f"are reused.", file=sys.stderr)
    return None


def find_reusable(runs: Sequence[Run], options: Options) -> Dict[str, str]:
  """Run name -> finished outside directory with the same settings.

  Only runs whose own logdir holds no progress are considered.
  """
  candidates = []
  for path in _candidate_dirs(options):
    config = records.read_json(os.path.join(path, records.CONFIG_FILE))
    summary = records.read_json(os.path.join(path, records.SUMMARY_FILE))
    if isinstance(config, dict) and isinstance(summary, dict):
      candidates.append((path, config, summary))
  found, defaults = {}, {}
  for run in runs:
    if records.read_rows(run.path) or os.path.exists(
        os.path.join(run.path, records.SUMMARY_FILE)):
      continue
    for path, config, summary in candidates:
      flags_ = run.flag_values()
      if (config.get("dataset") != flags_["dataset"] or
          config.get("grad_type") != flags_["grad_type"] or
          summary.get("steps", 0) < run.steps):
        continue
      module = run.variant.module
      if module not in defaults:
        defaults[module] = module_defaults(module, options.python)
      if defaults[module] is None or not matches(run, config,
                                                 defaults[module]):
        continue
      if any(r["step"] <= run.steps for r in records.read_rows(path)):
        found[run.name] = path
        break
  return found


# --------------------------------------------------------------------------
# The machine.


def git_commit(repo: str = settings.REPO_ROOT) -> Optional[str]:
  """HEAD of the repository, with "+local changes" when tracked files
  outside ``docs/`` differ from it.

  The driver rewrites the report, its figures and the records under
  ``docs/`` while runs train, so changes there say nothing about the code a
  run was trained with and would mark every later launch as modified.
  """
  try:
    head = subprocess.run(["git", "rev-parse", "HEAD"],
                          cwd=repo, capture_output=True,
                          text=True, check=True, timeout=30).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--",
         ".", ":(exclude)docs"],
        cwd=repo, capture_output=True, text=True, check=True,
        timeout=30).stdout.strip()
    return head + ("+local changes" if dirty else "")
  except (subprocess.SubprocessError, OSError):
    return None


# --------------------------------------------------------------------------
# Launching.


class _Launch:
  """A run being trained by a child process of this driver."""

  def __init__(self, run: Run, options: Options):
    self.run = run
    self.lock_path = os.path.join(run.path, records.LOCK_FILE)
    self.process = None
    self.log = None
    self.options = options

  def acquire(self) -> bool:
    os.makedirs(self.run.path, exist_ok=True)
    for _ in range(2):
      try:
        fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
      except FileExistsError:
        if lock_holder(self.run) is not None:
          return False
        try:
          os.remove(self.lock_path)  # Stale: its process is gone.
        except FileNotFoundError:
          pass
        continue
      with os.fdopen(fd, "w") as f:
        json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                   "since": time.time()}, f)
      return True
    return False

  def start(self):
    run = self.run
    command = run.command(self.options.python)
    env = child_environment(os.environ, self.options.jobs,
                            len(os.sched_getaffinity(0)))
    start_step = load_state(run).steps_done
    entry = {"start_time": time.time(),
             "start": datetime.datetime.now().isoformat(timespec="seconds"),
             "target_steps": run.steps, "start_step": start_step,
             "command": command, "git_commit": git_commit(),
             "threads": {k: env[k] for k in THREAD_VARIABLES},
             "load_average": list(os.getloadavg()),
             "machine": hardware.machine_info()}
    self._update_machine_file(append=entry)
    self.log = open(os.path.join(run.path, records.RUN_LOG), "a")
    self.log.write(f"{LAUNCH_HEADER} {entry['start']} target {run.steps} "
                   f"steps from step {start_step}\n$ "
                   f"{' '.join(command)}\n")
    self.log.flush()
    self.process = subprocess.Popen(command, cwd=settings.REPO_ROOT, env=env,
                                    stdout=self.log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
    with open(self.lock_path, "w") as f:
      json.dump({"pid": os.getpid(), "child_pid": self.process.pid,
                 "host": socket.gethostname(), "since": time.time()}, f)

  def finish(self) -> int:
    """Closes the launch (machine.json, lock) and records the run."""
    code = self.process.returncode
    self.log.write(f"{EXIT_HEADER} {code}\n")
    self.log.close()
    state = load_state(self.run)
    self._update_machine_file(finish={
        "end_time": time.time(),
        "end": datetime.datetime.now().isoformat(timespec="seconds"),
        "returncode": code, "end_step": state.steps_done})
    try:
      os.remove(self.lock_path)
    except FileNotFoundError:
      pass
    write_record(load_state(self.run), self.options.records_dir)
    return code

  def _update_machine_file(self, append=None, finish=None):
    path = os.path.join(self.run.path, records.MACHINE_FILE)
    data = records.read_json(path) or {"launches": []}
    if append is not None:
      data["launches"].append(append)
    if finish is not None and data["launches"]:
      data["launches"][-1].update(finish)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      json.dump(data, f, indent=1)
    os.replace(tmp, path)


def _record_and_report(options: Options, runs: Sequence[Run],
                       reused: Mapping[str, str]) -> None:
  collect_records(runs, options, reused)
  report.write_report(options, runs)


def run_study(options: Options) -> int:
  """Trains the unfinished selected runs, records every run with outputs
  and writes the report from the records; returns the exit status."""
  runs = settings.study_runs(options)
  selected = settings.select(runs, options.only)
  if options.only and not selected:
    print(f"study: --only {','.join(options.only)} selects no run; "
          f"runs are named like {runs[0].name}", file=sys.stderr)
    return 2
  reused = find_reusable(runs, options) if options.reuse_from else {}
  if options.report_only:
    _record_and_report(options, runs, reused)
    return 0
  todo = []
  for run in selected:
    state = load_state(run, reused.get(run.name))
    # Run directories live outside the repository and may be gone (another
    # machine, a cleaned disk); a committed record that finished is final.
    recorded = records.load_record(run, options.records_dir)
    if state.complete:
      where = f" (reused {state.source})" if state.reused else ""
      print(f"skip (done, {state.steps_done} steps){where}: {run.name}")
    elif recorded.complete:
      print(f"skip (done in its record, {recorded.steps_done} steps): "
            f"{run.name}")
    elif state.running:
      print(f"skip (running in another process): {run.name}")
    elif options.dry_run:
      print(f"# {run.name}: {state.status}, step {state.steps_done} of "
            f"{run.steps}\n{' '.join(run.command(options.python))}")
    else:
      if recorded.steps_done > state.steps_done:
        print(f"note: {run.name} has a record at step "
              f"{recorded.steps_done} but its run directory is at step "
              f"{state.steps_done}: it trains from there (the record is "
              f"kept until the run passes it)")
      todo.append(run)
  if options.dry_run:
    return 0
  collect_records(runs, options, reused)
  failures, active = 0, []
  while todo or active:
    while todo and len(active) < options.jobs:
      launch = _Launch(todo.pop(0), options)
      if not launch.acquire():
        print(f"skip (taken by another process): {launch.run.name}")
        continue
      print(f"launch: {launch.run.name} (target {launch.run.steps} steps; "
            f"log {os.path.join(launch.run.logdir, records.RUN_LOG)})",
            flush=True)
      launch.start()
      active.append(launch)
    if not active:
      continue
    if len(active) == 1:
      active[0].process.wait()
    while all(launch.process.poll() is None for launch in active):
      time.sleep(1.0)
    for launch in [a for a in active if a.process.poll() is not None]:
      code = launch.finish()
      active.remove(launch)
      failures += code != 0
      print(f"{'done' if code == 0 else f'FAILED (exit code {code})'}: "
            f"{launch.run.name}", flush=True)
      _record_and_report(options, runs, reused)
  _record_and_report(options, runs, reused)
  return 1 if failures else 0
