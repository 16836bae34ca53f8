"""The checkout's virtualenv interpreter as Bazel's Python toolchain.

Bazel 2.1 wants an absolute interpreter path in py_runtime, and the checkout
can live anywhere; this repository rule finds the workspace root, checks the
interpreter there and writes a py_runtime / py_runtime_pair / toolchain for
it. WORKSPACE registers `@venv_python//:toolchain`.

$TF_DISCRETE_BAZEL_PYTHON overrides the interpreter (an absolute path).
"""

_OVERRIDE = "TF_DISCRETE_BAZEL_PYTHON"

_BUILD = """\
load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")

package(default_visibility = ["//visibility:public"])

py_runtime(
    name = "py3_runtime",
    interpreter_path = "{interpreter}",
    python_version = "PY3",
)

py_runtime_pair(
    name = "runtime_pair",
    py3_runtime = ":py3_runtime",
)

toolchain(
    name = "toolchain",
    toolchain = ":runtime_pair",
    toolchain_type = "@bazel_tools//tools/python:toolchain_type",
)
"""

def _venv_python_impl(rctx):
    interpreter = rctx.os.environ.get(_OVERRIDE, "")
    if not interpreter:
        root = rctx.path(Label("@//:WORKSPACE")).dirname
        interpreter = "%s/%s" % (root, rctx.attr.interpreter)
    result = rctx.execute([interpreter, "-c", "import sys; print(sys.prefix)"])
    if result.return_code != 0:
        fail(("no working Python interpreter at %s (run `make venv` first, " +
              "or set %s): %s") % (interpreter, _OVERRIDE, result.stderr))
    rctx.file("WORKSPACE", 'workspace(name = "%s")\n' % rctx.name)
    rctx.file("BUILD", _BUILD.format(interpreter = interpreter))

venv_python = repository_rule(
    implementation = _venv_python_impl,
    attrs = {
        "interpreter": attr.string(
            default = ".venv/bin/python",
            doc = "The interpreter, relative to the workspace root.",
        ),
    },
    environ = [_OVERRIDE],
    local = True,
)
