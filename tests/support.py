"""Helpers shared by the test modules (fixtures are in conftest.py)."""

import os
import subprocess
import sys

# The repository: tests run commands from here (experiments/ is not
# installed, it runs from the checkout).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Environment of the commands the tests start: quiet TensorFlow, the
# checkout importable.
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT}


def run_module(module, *args, timeout=600, env=None, check=True):
  """Runs ``python -m module args`` from the checkout; the CompletedProcess
  (stdout and stderr as text)."""
  result = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT,
                          env={**ENV, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)
  if check:
    assert result.returncode == 0, (result.stdout[-2000:] +
                                    result.stderr[-4000:])
  return result
