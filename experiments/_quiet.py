"""Keeps TensorFlow's native start-up chatter off a command's terminal.

TensorFlow's C++ runtime writes lines such as ``I0000 00:00:... port.cc]
oneDNN custom operations are on`` and ``WARNING: All log messages before
absl::InitializeLog() is called are written to STDERR`` straight to file
descriptor 2, before any Python logging setting or ``TF_CPP_MIN_LOG_LEVEL``
applies to them. :func:`filter_native_stderr` routes descriptor 2 through a
pipe whose reader drops exactly those lines (native log lines with a
severity below warning, and the notices around them) and passes everything
else through unchanged, Python tracebacks included. An exit handler drains
the pipe, so nothing written before the process exits is lost.

Used by ``experiments/__init__.py`` for commands run as ``python -m
experiments.<command>``, unless the environment sets
``TF_DISCRETE_VERBOSE=1``.
"""

import atexit
import os
import re
import sys
import threading

# Native log lines below WARNING ("I" info; "W" lines stay), and the fixed
# notices TensorFlow prints around them at start-up.
_NOISE = re.compile(
    rb"^(I\d{4} [\d:.]+ +\d+ \S+\] |"
    rb"WARNING: All log messages before absl::InitializeLog\(\) |"
    rb"E\d{4} [\d:.]+ +\d+ cuda_\w+\.cc:\d+\] failed call to cuInit|"
    rb"E\d{4} [\d:.]+ +\d+ util\.cc:\d+\] oneDNN supports DT_INT32 only|"
    rb"To enable the following instructions: .* rebuild TensorFlow)")


def is_noise(line: bytes) -> bool:
  """Whether a line of native stderr output is start-up chatter."""
  return bool(_NOISE.match(line))


def filter_native_stderr():
  """Filters descriptor 2 of this process for the rest of its life."""
  sys.stderr.flush()
  real = os.dup(2)
  read, write = os.pipe()
  os.dup2(write, 2)
  os.close(write)

  def pump():
    pending = b""
    with os.fdopen(read, "rb", buffering=0) as source:
      while True:
        chunk = source.read(65536)
        if not chunk:
          break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        kept = b"".join(line + b"\n" for line in lines if not is_noise(line))
        if kept:
          os.write(real, kept)
    if pending and not is_noise(pending):
      os.write(real, pending)

  thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
  thread.start()

  def drain():
    # Closing the last write end ends the pump, after it has passed on
    # everything written so far.
    sys.stderr.flush()
    os.dup2(real, 2)
    thread.join(timeout=5)

  atexit.register(drain)
