r"""Where the time of a compiled function goes, by XLA instruction.

XLA's CPU runtime emits one profiler event per executed instruction (its
"thunks": a ``dot``, a loop ``fusion``, a ``copy``, ...) when the process
starts with ``--xla_cpu_enable_xprof_traceme=true`` in ``XLA_FLAGS``
(:data:`TRACE_FLAG`; read once, before the first compilation). This module
records one call of a ``tf.function(jit_compile=True)`` with the public
``tf.profiler`` API, joins the events with the function's optimized HLO by
instruction name, and sums their wall time by opcode:

    breakdown = profile(train_fn, (num_steps,), logdir)
    breakdown.per_opcode_ms   # {"dot": ..., "fusion": ..., "copy": ...}

The trace itself stays in ``logdir`` for TensorBoard's profile plugin.
Instructions that only hold others (``while``, ``call``, ``conditional``)
are left out so that no time counts twice; on two threads, instructions
that run concurrently each count their own wall time, so the opcode sums
can exceed the call's wall time.
"""

import collections
import dataclasses
import glob
import os
import re
import time
from typing import Callable, Dict, List, Sequence, Tuple

import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

TRACE_FLAG = "--xla_cpu_enable_xprof_traceme=true"

#: Opcodes whose events enclose their body's events.
_CONTAINERS = frozenset({"while", "call", "conditional"})

#: ``%name = <shape> opcode(`` in HLO text (the shape may be a tuple).
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+) = .*? ([a-z][\w\-]*)\(")


def with_trace_flag(environ: Dict[str, str]) -> Dict[str, str]:
  """``environ`` with :data:`TRACE_FLAG` added to ``XLA_FLAGS``."""
  current = environ.get("XLA_FLAGS", "")
  if TRACE_FLAG in current.split():
    return dict(environ)
  return dict(environ, XLA_FLAGS=f"{current} {TRACE_FLAG}".strip())


def hlo_opcodes(hlo_text: str) -> Dict[str, str]:
  """Instruction name -> opcode, for every instruction of an HLO module."""
  opcodes = {}
  for line in hlo_text.splitlines():
    match = _INSTRUCTION.match(line)
    if match:
      opcodes[match.group(1)] = match.group(2)
  return opcodes


def event_durations(xspace_path: str) -> Dict[str, float]:
  """Total seconds per event name over every plane and thread of a trace."""
  space = xplane_pb2.XSpace()
  with open(xspace_path, "rb") as f:
    space.ParseFromString(f.read())
  totals = collections.defaultdict(float)
  for plane in space.planes:
    for line in plane.lines:
      for event in line.events:
        name = plane.event_metadata[event.metadata_id].name
        totals[name] += event.duration_ps * 1e-12
  return dict(totals)


@dataclasses.dataclass(frozen=True)
class Breakdown:
  """Time of one profiled call, in milliseconds per ``per`` (e.g. steps)."""
  wall_ms: float
  per_opcode_ms: Dict[str, float]
  top: List[Tuple[str, str, float]]  # (instruction, opcode, ms), slowest first

  @property
  def traced(self) -> bool:
    """False when no instruction event came (the trace flag was not set)."""
    return bool(self.top)

  def summary(self, top: int = 8) -> str:
    """One line of opcode totals, then the slowest instructions."""
    if not self.traced:
      return (f"no XLA instruction events: start the process with "
              f"XLA_FLAGS={TRACE_FLAG}")
    opcodes = ", ".join(f"{op} {ms:.3f}" for op, ms in sorted(
        self.per_opcode_ms.items(), key=lambda kv: -kv[1]))
    slowest = "; ".join(f"{name} ({op}) {ms:.3f}"
                        for name, op, ms in self.top[:top])
    return (f"wall {self.wall_ms:.3f} ms; by opcode (ms): {opcodes}\n"
            f"    slowest: {slowest}")


def profile(fn: Callable, args: Sequence, logdir: str,
            per: float = 1.0, keep: int = 20) -> Breakdown:
  """Profiles one call ``fn(*args)`` of a compiled ``tf.function``.

  ``fn`` should have run once already (so the call is not a compilation).
  Times are divided by ``per`` (e.g. the steps of a multi-step call);
  the ``keep`` slowest instructions are listed.
  """
  opcodes = hlo_opcodes(fn.experimental_get_compiler_ir(*args)(
      stage="optimized_hlo"))
  before = set(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"),
                         recursive=True))
  tf.profiler.experimental.start(logdir)
  start = time.perf_counter()
  try:
    tf.nest.map_structure(lambda t: t.numpy(), fn(*args))
    wall = time.perf_counter() - start
  finally:
    tf.profiler.experimental.stop()
  written = sorted(set(glob.glob(os.path.join(
      logdir, "**", "*.xplane.pb"), recursive=True)) - before)
  if not written:
    raise RuntimeError(f"The profiler wrote no trace under {logdir}.")
  durations = event_durations(written[-1])
  per_opcode = collections.defaultdict(float)
  instructions = []
  for name, seconds in durations.items():
    opcode = opcodes.get(name)
    if opcode is None or opcode in _CONTAINERS:
      continue
    ms = 1e3 * seconds / per
    per_opcode[opcode] += ms
    instructions.append((name, opcode, ms))
  instructions.sort(key=lambda item: -item[2])
  return Breakdown(wall_ms=1e3 * wall / per, per_opcode_ms=dict(per_opcode),
                   top=instructions[:keep])
