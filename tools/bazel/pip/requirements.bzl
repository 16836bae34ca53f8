"""Stand-in for @pip//:requirements.bzl (a rules_python pip hub).

Bazel installs no third-party packages here: the tests run on the
virtualenv's interpreter (.venv, registered as the Python toolchain in
WORKSPACE), whose site-packages already hold everything setup.py requires.
So each requirement resolves to an empty py_library of this repository
(BUILD lists them); the top-level BUILD keeps its per-package dependencies
as documentation and for tests/test_build.py.
"""

def normalize(name):
    """A package name as a target name: `absl-py` -> `absl_py`."""
    return name.lower().replace("-", "_").replace(".", "_")

def requirement(name):
    """The label standing for package `name` (an empty library)."""
    if not name:
        fail("requirement() needs a package name")
    return "@pip//:" + normalize(name)
