"""Runs one test file through pytest: the ``main`` of every Bazel py_test.

    python tests/pytest_main.py tests/experiments/test_training.py

The exit status is pytest's, so a failing test fails the target (a pytest
module run as a plain script would define its tests and call none).
"""

import os
import sys

import pytest


def main(argv):
  if len(argv) < 2:
    sys.exit("usage: pytest_main.py TEST_FILE [pytest options]")
  # Bazel runs the test from its runfiles tree, where the workspace's files
  # (this checkout's layout) sit under the current directory.
  here = os.path.dirname(os.path.abspath(__file__))
  root = os.path.dirname(here)
  # Python put this script's folder first on sys.path with symlinks
  # resolved: under Bazel, the source tree's tests/ (runfiles are symlinks).
  # Imports must come from the runfiles tree only.
  real = os.path.realpath(here)
  if real != here and sys.path and sys.path[0] == real:
    del sys.path[0]
  os.chdir(root)
  sys.path.insert(0, root)
  code = pytest.main(["-q", "-p", "no:cacheprovider", *argv[1:]])
  # No test collected (exit 5) counts as a failure: a target must test.
  sys.exit(1 if code == pytest.ExitCode.NO_TESTS_COLLECTED else int(code))


if __name__ == "__main__":
  main(sys.argv)
