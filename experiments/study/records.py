"""What a run directory and a run's record hold, and a run's state read from
either.

A run directory (``<root>/<group>/<dataset>-<setting>-<arm>-seed<seed>``)
holds the binary's outputs (``metrics.jsonl``, ``summary.json``,
``config.json``, checkpoints, event files), the driver's ``run.log`` and
``machine.json`` (one entry per launch), and ``reproduce.lock`` while a
process trains it.

A run's record (``<records>/<group>/<dataset>-<setting>-<arm>-seed<seed>/``,
committed to the repository) is the compact copy the report is made from:
``metrics.jsonl`` (the rows in step order), ``summary.json`` and
``config.json`` (as the binary wrote them), ``machine.json`` (the driver's
launches) and ``status.json`` (written by the driver: target steps, steps
done, whether the run was complete, running, stopped or failed when it was
recorded, and the directory of a reused run).
"""

import dataclasses
import json
import math
import os
from typing import Any, Dict, List, Optional

from experiments.study import settings

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.json"
MACHINE_FILE = "machine.json"
STATUS_FILE = "status.json"
RUN_LOG = "run.log"
LOCK_FILE = "reproduce.lock"


def read_json(path: str) -> Optional[Any]:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def read_rows(logdir: str) -> List[Dict[str, Any]]:
  """metrics.jsonl rows in step order (a torn last line is skipped)."""
  rows = []
  try:
    with open(os.path.join(logdir, METRICS_FILE)) as f:
      for line in f:
        try:
          row = json.loads(line)
        except ValueError:
          continue
        if isinstance(row, dict) and "step" in row:
          rows.append(row)
  except OSError:
    pass
  return sorted(rows, key=lambda r: r["step"])


def record_dir(records: str, run: settings.Run) -> str:
  """The record directory of ``run`` under the records folder."""
  return os.path.join(records, run.group, run.short_name)


@dataclasses.dataclass
class RunState:
  """A run as found in its run directory or in its record."""
  run: settings.Run
  summary: Optional[Dict[str, Any]]
  rows: List[Dict[str, Any]]
  launches: List[Dict[str, Any]]
  running: bool
  config: Optional[Dict[str, Any]] = None
  # The directory read (a run directory, a reused one, or a record).
  source: str = ""
  # Where a reused run was made (as the binaries would name it), else None.
  reused_from: Optional[str] = None

  @property
  def reused(self) -> bool:
    return self.reused_from is not None

  @property
  def exists(self) -> bool:
    """Whether anything of the run has been written."""
    return bool(self.summary or self.rows or self.launches)

  @property
  def steps_done(self) -> int:
    steps = [self.summary.get("steps", 0)] if self.summary else []
    steps += [self.rows[-1]["step"]] if self.rows else []
    return int(max(steps, default=0))

  @property
  def complete(self) -> bool:
    return bool(self.summary) and self.summary.get("steps", 0) >= (
        self.run.steps) and self.final_row() is not None

  @property
  def status(self) -> str:
    """done, running, failed (last launch exited non-zero), incomplete
    (stopped short of its target) or pending (nothing written)."""
    if self.complete:
      return "done"
    if self.running:
      return "running"
    if self.launches and self.launches[-1].get("returncode") not in (None, 0):
      return "failed"
    return "incomplete" if self.exists else "pending"

  def final_row(self) -> Optional[Dict[str, Any]]:
    """The metrics row at the target step (the last one before it for a run
    trained beyond its target without a row there), or None."""
    before = [r for r in self.rows if r["step"] <= self.run.steps]
    return before[-1] if before else None

  def latest_row(self) -> Optional[Dict[str, Any]]:
    """The row a report shows: the final one when complete, else the last."""
    if self.complete:
      return self.final_row()
    return self.rows[-1] if self.rows else None

  def wall_time(self) -> Optional[float]:
    """Seconds of all launches by the driver (else the binary's summary).

    A launch without an end (its driver gone, or still running) counts until
    the last metrics row written after it started and before the next launch
    started: a run restarted from step 0 rewrites its rows, and those belong
    to the new launch.
    """
    total, known = 0.0, False
    following = self.launches[1:] + [{}]
    for launch, next_launch in zip(self.launches, following):
      start, end = launch.get("start_time"), launch.get("end_time")
      if start is None:
        continue
      if end is None:
        next_start = next_launch.get("start_time") or math.inf
        own = [r["wall_time"] for r in self.rows
               if start <= r.get("wall_time", 0) < next_start]
        end = max(own, default=None)
      if end is not None:
        total += end - start
        known = True
    if known:
      return total
    if self.summary and self.summary.get("wall_time_sec") is not None:
      return float(self.summary["wall_time_sec"])
    return None

  def machine(self) -> Optional[Dict[str, Any]]:
    machines = [l["machine"] for l in self.launches if l.get("machine")]
    return machines[-1] if machines else None

  def git_commits(self) -> List[str]:
    return list(dict.fromkeys(l["git_commit"] for l in self.launches
                              if l.get("git_commit")))

  def status_record(self) -> Dict[str, Any]:
    """The content of the record's status.json."""
    return {"run": self.run.name, "module": self.run.variant.module,
            "target_steps": self.run.steps, "steps_done": self.steps_done,
            "complete": self.complete, "status": self.status,
            "reused_from": self.reused_from}


def load_record(run: settings.Run, records: str) -> RunState:
  """The state of ``run`` as its record holds it (pending without one).

  ``complete`` is judged against ``run.steps`` (the target of the study as
  configured now), so a record made for a lower target reads as incomplete.
  """
  path = record_dir(records, run)
  status = read_json(os.path.join(path, STATUS_FILE)) or {}
  machine = read_json(os.path.join(path, MACHINE_FILE)) or {}
  return RunState(
      run=run, summary=read_json(os.path.join(path, SUMMARY_FILE)),
      rows=read_rows(path), launches=list(machine.get("launches", [])),
      running=status.get("status") == "running",
      config=read_json(os.path.join(path, CONFIG_FILE)), source=path,
      reused_from=status.get("reused_from"))
