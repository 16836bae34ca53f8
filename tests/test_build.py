"""Keeps BUILD honest: Bazel cannot run offline here, so check it statically.

Every module of the package and the experiments, and every test file, must be
in some target's ``srcs``; every dependency must name a target defined in
BUILD (or a pip requirement declared by ``requirement("...")``).
"""

import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load_targets():
  targets = {}

  def rule(kind):
    def define(name, srcs=(), deps=(), **kwargs):
      assert name not in targets, f"duplicate target {name}"
      targets[name] = dict(kind=kind, srcs=list(srcs), deps=list(deps),
                           **kwargs)
    return define

  namespace = {
      "py_library": rule("py_library"),
      "py_binary": rule("py_binary"),
      "py_test": rule("py_test"),
      "load": lambda *args: None,
      "package": lambda **kwargs: None,
      "requirement": lambda name: f"@pip//{name}",
      "glob": lambda patterns, **kw: sorted(
          str(p.relative_to(ROOT)) for pat in patterns for p in ROOT.glob(pat)),
  }
  exec(compile((ROOT / "BUILD").read_text(), "BUILD", "exec"), namespace)
  return targets


TARGETS = _load_targets()


def _python_files(folder):
  return sorted(str(p.relative_to(ROOT)) for p in (ROOT / folder).rglob("*.py")
                if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", _python_files("tf_discrete") +
                         _python_files("experiments") + _python_files("tests"))
def test_every_python_file_is_in_a_target(path):
  owners = [name for name, t in TARGETS.items() if path in t["srcs"]]
  assert owners, f"{path} belongs to no BUILD target"


def test_every_test_file_has_a_py_test():
  for path in _python_files("tests"):
    if os.path.basename(path).startswith("test_"):
      assert any(t["kind"] == "py_test" and path in t["srcs"]
                 for t in TARGETS.values()), f"no py_test for {path}"


def test_every_dependency_exists():
  for name, target in TARGETS.items():
    for dep in target["deps"]:
      if dep.startswith("@pip//"):
        continue
      assert dep.lstrip("/").lstrip(":") in TARGETS, (
          f"target {name} depends on unknown {dep}")


def test_every_src_exists():
  for name, target in TARGETS.items():
    for src in target["srcs"]:
      assert (ROOT / src).is_file(), f"target {name}: missing {src}"
