"""``import tf_discrete`` stays light: datasets (and tensorflow-datasets) are
imported on first use only."""

import ast
import os
import pathlib
import subprocess
import sys

import tf_discrete

_PACKAGE = pathlib.Path(tf_discrete.__file__).resolve().parent


def test_import_does_not_load_tensorflow_datasets():
  result = subprocess.run(
      [sys.executable, "-c",
       "import tf_discrete, sys; "
       "assert 'tensorflow_datasets' not in sys.modules, 'tfds imported'; "
       "assert 'tf_discrete.datasets' not in sys.modules; "
       "tf_discrete.bernoulli.available(); print('LIGHT_OK')"],
      capture_output=True, text=True, timeout=300,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert "LIGHT_OK" in result.stdout, result.stderr[-3000:]


def _imported_modules(path):
  tree = ast.parse(path.read_text(encoding="utf-8"))
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      yield node.module


def test_only_the_data_module_imports_tfds_and_none_imports_matplotlib():
  for path in _PACKAGE.rglob("*.py"):
    relative = path.relative_to(_PACKAGE)
    roots = {m.split(".")[0] for m in _imported_modules(path)}
    assert "matplotlib" not in roots, relative
    if relative.parts[0] != "datasets":
      assert "tensorflow_datasets" not in roots, relative


def test_datasets_is_importable_on_demand():
  datasets = tf_discrete.datasets  # Lazy attribute.
  assert datasets.__name__ == "tf_discrete.datasets"
  assert "datasets" in dir(tf_discrete)
  try:
    tf_discrete.no_such_module  # pylint: disable=pointless-statement
  except AttributeError as error:
    assert "no_such_module" in str(error)
  else:
    raise AssertionError("expected AttributeError")
