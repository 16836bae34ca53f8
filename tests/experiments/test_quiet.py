"""The native-stderr filter of the commands: chatter out, the rest in."""

import subprocess
import sys

from experiments import _quiet
from tests import support

NOISE = [
    b"WARNING: All log messages before absl::InitializeLog() is called are "
    b"written to STDERR",
    b"I0000 00:00:1795959983.779255   32699 port.cc:153] oneDNN custom "
    b"operations are on.",
    b"E0000 00:00:1795959998.585053   32699 cuda_platform.cc:52] failed call "
    b"to cuInit: INTERNAL: CUDA error",
]
KEPT = [
    b"W0000 00:00:1795959983.779255   32699 some.cc:1] a native warning",
    b"E0000 00:00:1795959983.779255   32699 some.cc:1] a native error",
    b"FATAL Flags that do not fit together: --x",
    b"I0000 is not a log line without its fields",
]


def test_noise_lines_are_recognised():
  assert all(_quiet.is_noise(line) for line in NOISE)
  assert not any(_quiet.is_noise(line) for line in KEPT)


def test_filtered_process_keeps_its_errors_and_traceback():
  script = (
      "import os, sys\n"
      "from experiments import _quiet\n"
      "_quiet.filter_native_stderr()\n"
      f"for line in {NOISE + KEPT!r}:\n"
      "  os.write(2, line + b'\\n')\n"
      "print('to stdout')\n"
      "raise RuntimeError('the last words')\n")
  result = subprocess.run([sys.executable, "-c", script], cwd=support.ROOT,
                          env=support.ENV, capture_output=True, timeout=60)
  assert result.returncode == 1
  assert result.stdout == b"to stdout\n"
  for line in KEPT:
    assert line in result.stderr
  for line in NOISE:
    assert line not in result.stderr
  assert b"Traceback" in result.stderr
  assert b"RuntimeError: the last words" in result.stderr


def test_commands_start_without_native_chatter():
  result = support.run_module("experiments.estimator_variance",
                              "--num_runs=200", "--families=bernoulli")
  assert "relative bias" in result.stdout
  assert "I0000" not in result.stderr and "absl::InitializeLog" not in (
      result.stderr), result.stderr[:2000]
