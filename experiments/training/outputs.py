"""What a run writes in its logdir, and the lock that keeps it to one writer.

``metrics.jsonl`` (one JSON object per evaluation) and TensorBoard events,
``checkpoints/``, ``config.json`` (the run's flags, checked on resume), and
at the end ``summary.json`` and ``curves.png``; ``.lock`` names the process
that holds the logdir (:class:`LogdirLock`). Every file but the TensorBoard
events is written to a temporary file and renamed over the old one, so a
kill at any instant leaves the old or the new version, never a torn one.
See ``docs/runs.md``.

Under multi-worker training only the chief writes the logdir and takes its
lock; the other workers keep their metrics rows in memory
(:func:`metrics_log`) and save their checkpoints to a temporary folder
(:func:`save_checkpoint`), since every worker must take part in a save.
"""

import collections
import contextlib
import datetime
import errno
import json
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import Any, Collection, Dict, List, Mapping, Optional, Sequence

from absl import logging
import tensorflow as tf

from tensorflow.core.framework import summary_pb2

from experiments import cli

try:
  import fcntl  # pylint: disable=g-import-not-at-top
except ImportError:  # Not POSIX: no locks (see LogdirLock).
  fcntl = None

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CURVES_FILE = "curves.png"
CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
LOCK_FILE = ".lock"

_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
    data_class=summary_pb2.DATA_CLASS_SCALAR).SerializeToString()


class ConfigMismatchError(cli.UserError, ValueError):
  """The logdir holds a run with other settings."""


class LogdirInUseError(cli.UserError):
  """Another live process holds the logdir's lock."""


class DamagedOutputError(cli.UserError):
  """A file of the logdir cannot be read (other than a torn last line)."""


# --------------------------------------------------------------------------
# Fault injection (tests): off unless the environment variable is set.
# --------------------------------------------------------------------------

#: ``<point>:<n>`` makes the process SIGKILL itself the n-th time it reaches
#: the named point (``<point>`` alone: the first time). For tests of
#: resumption; unset (the default), the points do nothing.
KILL_AT_ENV = "TF_DISCRETE_KILL_AT"
#: A folder where non-chief workers of a multi-worker run keep their
#: checkpoints, in ``<type>-<index>/`` (to compare their weights with the
#: chief's); unset (the default), they save to a temporary folder deleted
#: after each save.
WORKER_CHECKPOINTS_ENV = "TF_DISCRETE_WORKER_CHECKPOINTS"
#: The points: after a training call, after an evaluation (before its row
#: is written), after ``metrics.jsonl`` is written to its temporary file
#: (before the rename), after a checkpoint's files are written (before the
#: ``checkpoint`` state file names it).
KILL_POINTS = ("train", "eval", "metrics", "checkpoint")
_kill_counts = collections.Counter()


def kill_target() -> Optional[tuple]:
  """``(point, n)`` of ``$TF_DISCRETE_KILL_AT``, or None when unset.

  Raises:
    ValueError: a malformed value.
  """
  spec = os.environ.get(KILL_AT_ENV, "")
  if not spec:
    return None
  point, _, count = spec.partition(":")
  if point not in KILL_POINTS or not (count or "1").isdigit() or (
      int(count or 1) < 1):
    raise ValueError(f"${KILL_AT_ENV}={spec!r}: expected <point>[:<n>] with "
                     f"<point> in {KILL_POINTS} and n >= 1.")
  return point, int(count or 1)


def kill_point(name: str):
  """SIGKILLs this process if ``$TF_DISCRETE_KILL_AT`` targets this reach
  of point ``name``; does nothing otherwise."""
  target = kill_target()
  if target is None or target[0] != name:
    return
  _kill_counts[name] += 1
  if _kill_counts[name] == target[1]:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


# --------------------------------------------------------------------------
# Atomic writes.
# --------------------------------------------------------------------------


def _fsync_directory(path: str):
  """Makes a rename in ``path`` durable (where the filesystem allows)."""
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:  # Some filesystems cannot sync a directory.
    pass
  finally:
    os.close(fd)


def write_atomically(path: str, text: str, before_rename=None):
  """Writes ``text`` to ``path`` through a temporary file, synced to disk,
  and a rename: a reader, a kill or a crash sees the old or the new
  content, never part of it. ``before_rename()`` runs in between."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  if before_rename is not None:
    before_rename()
  os.replace(tmp, path)
  _fsync_directory(os.path.dirname(os.path.abspath(path)))


def write_json(path: str, data: Any):
  """Writes ``data`` as JSON through a temporary file and a rename, so a
  reader (or a kill) never sees half a file."""
  write_atomically(path, json.dumps(data, indent=1, sort_keys=True))


# --------------------------------------------------------------------------
# The logdir lock.
# --------------------------------------------------------------------------


def _process_start(pid: int) -> Optional[str]:
  """When process ``pid`` started (clock ticks since boot, from /proc), to
  tell it from a later process with the same pid; None if unknown."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      stat = f.read()
  except OSError:
    return None
  fields = stat[stat.rfind(")") + 2:].split()
  return fields[19] if len(fields) > 19 else None  # Field 22: starttime.


def _pid_alive(pid: int, start: Optional[str]) -> bool:
  """Whether ``pid`` runs on this host and is the process that started at
  ``start`` (when both are known)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass
  current = _process_start(pid)
  return start is None or current is None or current == start


def describe_holder(holder: Optional[Mapping[str, Any]]) -> str:
  """``pid P on host H, started T`` from a lock file's record."""
  if not holder:
    return "a process that has not recorded itself yet"
  return (f"pid {holder.get('pid')} on host {holder.get('host')}, started "
          f"{holder.get('started')}")


class LogdirLock:
  """An exclusive lock on a logdir, held by one run for its lifetime.

  ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``<logdir>/.lock``, whose content
  records the holder (pid, host, start time, command). The kernel releases
  a flock when its holder's process ends in any way (exit, crash,
  ``kill -9``); a lock left by a machine that went down is released by the
  file server (NFS) or with the machine (local disk). So a free lock whose
  file still names a holder means that holder ended without releasing it:
  the new run takes over and says so. If the holder named is alive on this
  host although the lock was free, the filesystem does not honour locks and
  the run stops rather than write beside it.

  Where ``flock`` fails (NFS without a lock daemon reports ENOLCK; other
  filesystems ENOSYS/EOPNOTSUPP, or there is no fcntl), the run warns and
  goes on unlocked: the user must then make sure that one process uses the
  logdir. The lock file is never deleted (a deleted lock file would let two
  processes lock two different files); a clean release empties it.
  """

  def __init__(self, logdir: str):
    self.path = os.path.join(logdir, LOCK_FILE)
    self._fd = None
    self.locked = False

  def _record(self) -> Dict[str, Any]:
    now = time.time()
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.fromtimestamp(now).astimezone()
                   .isoformat(timespec="seconds"),
        "started_unix": now,
        "pid_start": _process_start(os.getpid()),
        "command": list(sys.argv),
    }

  @staticmethod
  def _read(fd) -> Optional[Dict[str, Any]]:
    """The holder recorded in the open lock file, or None if empty."""
    for _ in range(10):  # The holder may be writing it right now.
      try:
        data = os.pread(fd, 1 << 16, 0)
      except OSError:
        return None
      if not data.strip():
        return None
      try:
        record = json.loads(data)
        return record if isinstance(record, dict) else None
      except ValueError:
        time.sleep(0.05)
    return None

  def _write(self, record: Optional[Mapping[str, Any]]):
    data = (json.dumps(record) + "\n").encode() if record else b""
    os.ftruncate(self._fd, 0)
    if data:
      os.pwrite(self._fd, data, 0)
    os.fsync(self._fd)

  def acquire(self) -> "LogdirLock":
    """Takes the lock.

    Raises:
      LogdirInUseError: another live process holds it.
    """
    for _ in range(5):
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      if fcntl is None:
        return self._unlocked(fd, "this system has no fcntl.flock")
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        holder = self._read(fd)
        os.close(fd)
        raise LogdirInUseError(
            f"{os.path.dirname(self.path)} is in use by another run: "
            f"{describe_holder(holder)} (lock file {self.path}). Wait for "
            f"it to end or stop it, or use another logdir.") from None
      except OSError as e:
        if e.errno in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP,
                       errno.EINVAL):
          return self._unlocked(fd, f"flock failed: {e.strerror}")
        os.close(fd)
        raise
      # Locked; make sure the path still names the file locked (another
      # process may have replaced or removed it in between).
      try:
        same = os.path.samestat(os.fstat(fd), os.stat(self.path))
      except FileNotFoundError:
        same = False
      if not same:
        os.close(fd)
        continue
      self._fd, self.locked = fd, True
      self._take_over(self._read(fd))
      self._write(self._record())
      return self
    raise LogdirInUseError(f"Could not lock {self.path}: the file keeps "
                           f"being replaced by another process.")

  def _take_over(self, previous: Optional[Mapping[str, Any]]):
    """Checks the holder left in a free lock file, which has ended."""
    if not previous or (
        previous.get("pid") == os.getpid() and
        previous.get("pid_start") == _process_start(os.getpid())):
      return  # Free, or left by this very process.
    if previous.get("host") == socket.gethostname():
      pid = previous.get("pid")
      if isinstance(pid, int) and _pid_alive(pid, previous.get("pid_start")):
        os.close(self._fd)  # Its record stays in the file.
        self._fd, self.locked = None, False
        raise LogdirInUseError(
            f"{os.path.dirname(self.path)} is recorded in use by "
            f"{describe_holder(previous)}, which is alive, yet its lock "
            f"{self.path} was free: this filesystem does not honour locks. "
            f"Stop that process or use another logdir.")
      logging.warning("Took over the logdir lock %s from %s, which ended "
                      "without releasing it (killed or crashed).", self.path,
                      describe_holder(previous))
    else:
      logging.warning(
          "Took over the logdir lock %s from %s: its lock was free, so that "
          "process has ended, or this filesystem does not share locks "
          "between machines (then stop one of the two runs).", self.path,
          describe_holder(previous))

  def _unlocked(self, fd, reason: str) -> "LogdirLock":
    """Goes on without the lock; the record still stops a second run of
    this host while the first one lives."""
    logging.warning(
        "Cannot lock %s (%s): this run goes on unlocked; make sure that no "
        "other process uses %s.", self.path, reason,
        os.path.dirname(self.path))
    self._fd, self.locked = fd, False
    self._take_over(self._read(fd))
    self._write(self._record())
    return self

  def release(self):
    """Empties the lock file (a clean end) and releases the lock."""
    if self._fd is None:
      return
    try:
      self._write(None)
    except OSError:
      pass
    finally:
      os.close(self._fd)  # Releases the flock.
      self._fd, self.locked = None, False

  def __enter__(self) -> "LogdirLock":
    return self.acquire()

  def __exit__(self, *exc_info):
    self.release()


# --------------------------------------------------------------------------
# Metrics and settings.
# --------------------------------------------------------------------------


class MetricsLog:
  """``metrics.jsonl`` plus TensorBoard scalars, one row per evaluation."""

  def __init__(self, logdir: str):
    self.path = os.path.join(logdir, METRICS_FILE)
    self.writer = tf.summary.create_file_writer(logdir)

  def rows(self) -> List[Dict[str, Any]]:
    """The rows in file order.

    A torn last line (a kill in the middle of an append, as written before
    ``metrics.jsonl`` was rewritten atomically) is left out: its row comes
    after the last checkpoint and is computed again.

    Raises:
      DamagedOutputError: a line before the last is not a JSON object.
    """
    try:
      with open(self.path) as f:
        lines = [line for line in f if line.strip()]
    except FileNotFoundError:
      return []
    rows = []
    for number, line in enumerate(lines, 1):
      try:
        row = json.loads(line)
      except ValueError:
        row = None
      if not isinstance(row, dict) or "step" not in row:
        if number == len(lines):
          logging.warning("%s: ignoring its torn last line.", self.path)
          break
        raise DamagedOutputError(
            f"{self.path}: line {number} is not a metrics row; repair or "
            f"remove that line.")
      rows.append(row)
    return rows

  def _rewrite(self, rows: Sequence[Mapping[str, Any]], before_rename=None):
    write_atomically(self.path, "".join(json.dumps(r) + "\n" for r in rows),
                     before_rename)

  def truncate(self, max_step: int) -> int:
    """Drops rows with step > max_step (written after the checkpoint)."""
    rows = self.rows()
    keep = [r for r in rows if r["step"] <= max_step]
    if len(keep) != len(rows) or (
        os.path.exists(self.path) and not rows and os.path.getsize(self.path)):
      self._rewrite(keep)
    return len(rows) - len(keep)

  def write(self, row: Dict[str, Any]):
    """Appends ``row``: the whole file is rewritten through a temporary
    file and a rename (a few hundred rows at most)."""
    row = {k: (v if not isinstance(v, float) or math.isfinite(v) else None)
           for k, v in row.items()}
    self._rewrite(self.rows() + [row],
                  before_rename=lambda: kill_point("metrics"))
    with self.writer.as_default(step=row["step"]):
      for key, value in row.items():
        if key not in ("step", "wall_time") and isinstance(value, float):
          # tf.summary.scalar needs the tensorboard package; the core op
          # with the scalars plugin's metadata writes the same event.
          tf.summary.write(key, tf.constant(value, tf.float32),
                           metadata=_SCALAR_METADATA)
    self.writer.flush()


def check_run_config(logdir: str, run_config: Mapping[str, Any],
                     resumable_keys: Collection[str], resuming: bool,
                     write: bool = True):
  """Writes ``config.json`` (unless ``write`` is False: a non-chief
  worker); when resuming, first checks that only ``resumable_keys`` differ
  from the stored one (ConfigMismatchError, a ValueError, otherwise)."""
  path = os.path.join(logdir, CONFIG_FILE)
  if resuming and os.path.exists(path):
    try:
      with open(path) as f:
        stored = json.load(f)
    except ValueError as e:
      raise DamagedOutputError(
          f"{path} is not readable JSON ({e}); restore it or remove it to "
          f"resume without the check of the flags.") from e
    changed = sorted(
        k for k in set(stored) | set(run_config)
        if k not in resumable_keys and stored.get(k) != run_config.get(k))
    if changed:
      diffs = ", ".join(f"{k}: {stored.get(k)!r} -> {run_config.get(k)!r}"
                        for k in changed)
      raise ConfigMismatchError(
          f"{logdir} holds a run with other settings ({diffs}); resume with "
          f"the same flags or use another logdir.")
  if write:
    write_json(path, dict(run_config))


class WorkerMetricsLog:
  """The :class:`MetricsLog` of a non-chief worker: the rows of this
  session in memory; nothing written (the chief writes the logdir)."""

  def __init__(self):
    self._rows = []

  def rows(self) -> List[Dict[str, Any]]:
    return list(self._rows)

  def truncate(self, max_step: int) -> int:
    before = len(self._rows)
    self._rows = [r for r in self._rows if r["step"] <= max_step]
    return before - len(self._rows)

  def write(self, row: Dict[str, Any]):
    self._rows.append({k: (v if not isinstance(v, float) or math.isfinite(v)
                           else None) for k, v in row.items()})


def metrics_log(logdir: str, chief: bool = True):
  """A :class:`MetricsLog` of ``logdir`` for the chief (any single-process
  run), a :class:`WorkerMetricsLog` for another worker."""
  return MetricsLog(logdir) if chief else WorkerMetricsLog()


def logdir_lock(logdir: str, chief: bool = True):
  """The :class:`LogdirLock` of ``logdir`` for the chief (any
  single-process run); nothing for another worker, which writes nothing
  there (a second lock taker would stop the run as in use)."""
  return LogdirLock(logdir) if chief else contextlib.nullcontext()


def save_checkpoint(manager, checkpoint, number: int, *, chief: bool = True,
                    task: str = "worker", keep: int = 3, **kwargs):
  """Saves ``checkpoint`` as ``ckpt-<number>``: through ``manager`` on the
  chief; on another worker of a multi-worker run, the same save into a
  temporary folder removed right after (TensorFlow's pattern for
  ``MultiWorkerMirroredStrategy``: saving distributed variables may run
  collectives, so every worker saves, only the chief's copy is kept), or
  into ``$TF_DISCRETE_WORKER_CHECKPOINTS/<task>/`` (the newest ``keep``
  kept) when that is set. ``kwargs`` go to ``CheckpointManager.save``. Returns the chief's path,
  or the worker's when kept, else None."""
  if chief:
    return manager.save(checkpoint_number=number, **kwargs)
  kept = os.environ.get(WORKER_CHECKPOINTS_ENV, "")
  if kept:
    directory = os.path.join(kept, task.replace(":", "-"))
    return tf.train.CheckpointManager(
        checkpoint, directory, max_to_keep=keep).save(
            checkpoint_number=number, **kwargs)
  directory = tempfile.mkdtemp(prefix="tf_discrete-worker-checkpoint-")
  try:
    tf.train.CheckpointManager(checkpoint, directory, max_to_keep=1).save(
        checkpoint_number=number, **kwargs)
  finally:
    shutil.rmtree(directory, ignore_errors=True)
  return None


def plot_curves(rows: Sequence[Mapping[str, Any]], path: str):
  """Plots the metrics of ``rows`` against the step.

  One panel for the bounds (train ELBO, valid/test IWAE, training
  objective), one for the gradient variances (log scale), one per other
  metric (throughput, evaluation time, bias check).
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  skip = ("step", "wall_time", "train_time_sec")
  keys = sorted({k for r in rows for k, v in r.items()
                 if k not in skip and isinstance(v, float)})
  bounds = [k for k in keys if k.endswith(("elbo", "iwae", "objective"))]
  variances = [k for k in keys if k.startswith("grad_variance")]
  panels = []
  if bounds:
    panels.append(("bounds (nats, higher is better)", bounds, "linear"))
  if variances:
    panels.append(("encoder gradient variance", variances, "log"))
  panels += [(k, [k], "linear") for k in keys
             if k not in bounds and k not in variances]
  panels = panels or [("no metrics yet", [], "linear")]
  cols = min(3, len(panels))
  fig, axes = plt.subplots(math.ceil(len(panels) / cols), cols,
                           figsize=(5 * cols, 3.5 * math.ceil(
                               len(panels) / cols)), squeeze=False)
  for ax, (title, names, scale) in zip(axes.flat, panels):
    for name in names:
      points = [(r["step"], r[name]) for r in rows
                if isinstance(r.get(name), float)]
      if points:
        ax.plot(*zip(*points), marker=".", label=name)
    ax.set(title=title, xlabel="step", yscale=scale)
    if len(names) > 1:
      ax.legend(fontsize="small")
  for ax in axes.flat[len(panels):]:
    ax.axis("off")
  fig.tight_layout()
  tmp = path + ".tmp"
  fig.savefig(tmp, dpi=100, format=os.path.splitext(path)[1][1:] or "png")
  plt.close(fig)
  os.replace(tmp, path)
