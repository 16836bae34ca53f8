"""Keeps BUILD honest, statically (Bazel itself runs in CI too).

Every module of the package and the experiments, and every test file, must be
in some target's ``srcs``; every dependency must name a target defined in
BUILD (or a pip requirement declared by ``requirement("...")``); every
project import must be reachable through declared dependencies.
"""

import os
import re
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _fail(message):
  raise AssertionError(f"BUILD: {message}")


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
      "fail": _fail,
      "package": lambda **kwargs: None,
      "requirement": lambda name: f"@pip//{name}",
      "glob": lambda patterns, **kw: sorted(
          str(p.relative_to(ROOT)) for pat in patterns for p in ROOT.glob(pat)
          if p.is_file() and "__pycache__" not in p.parts),
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


def _pip_stand_ins():
  """Target names the offline pip hub defines (tools/bazel/pip/BUILD)."""
  text = (ROOT / "tools/bazel/pip/BUILD").read_text()
  listed = text[text.index("for name in ["):]
  return set(re.findall(r'"([A-Za-z0-9_]+)"', listed))


def test_every_pip_requirement_has_a_stand_in():
  # Bazel's analysis fails on the first requirement() the hub lacks; the
  # normalization is the one requirements.bzl applies.
  defined = _pip_stand_ins()
  for name, target in TARGETS.items():
    for dep in target["deps"]:
      if dep.startswith("@pip//"):
        package = dep[len("@pip//"):].lower().replace("-", "_").replace(".", "_")
        assert package in defined, (
            f"target {name} requires {package!r}, which tools/bazel/pip/BUILD "
            "does not define")


def test_every_src_exists():
  for name, target in TARGETS.items():
    for src in target["srcs"]:
      assert (ROOT / src).is_file(), f"target {name}: missing {src}"


def _owner(path):
  return next((n for n, t in TARGETS.items() if path in t["srcs"]), None)


def _closure(name, seen=None):
  seen = set() if seen is None else seen
  if name not in seen:
    seen.add(name)
    for dep in TARGETS[name]["deps"]:
      if not dep.startswith("@pip//"):
        _closure(dep.lstrip("/").lstrip(":"), seen)
  return seen


def _project_imports(path):
  """Project modules imported by ``path``, as file paths."""
  import ast  # pylint: disable=g-import-not-at-top
  tree = ast.parse((ROOT / path).read_text())
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module:
      # `from pkg import mod` needs mod; the package __init__ comes with it.
      names = [f"{node.module}.{a.name}" for a in node.names]
      if not any(_module_file(n) for n in names):
        names = [node.module]
    elif isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    else:
      continue
    found.update(f for f in map(_module_file, names) if f and f != path)
  return found


def _module_file(module):
  """The project file of a dotted module name, or None."""
  if module.split(".")[0] not in ("tf_discrete", "experiments", "tests"):
    return None
  base = module.replace(".", "/")
  for candidate in (base + ".py", base + "/__init__.py"):
    if (ROOT / candidate).is_file():
      return candidate
  return None


def test_project_imports_are_declared_dependencies():
  for name, target in TARGETS.items():
    reachable = set()
    for dep_name in _closure(name):
      reachable.update(TARGETS[dep_name]["srcs"])
    for src in target["srcs"]:
      for imported in _project_imports(src):
        assert imported in reachable, (
            f"{src} imports {imported} but target {name} does not depend on "
            f"{_owner(imported)}")
