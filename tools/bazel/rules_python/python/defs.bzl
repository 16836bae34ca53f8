"""Stand-in for @rules_python//python:defs.bzl: Bazel 2.1's native py_* rules.

The names match rules_python's, so BUILD files written against the real
rules_python load unchanged.
"""

load("@bazel_tools//tools/python:toolchain.bzl", _py_runtime_pair = "py_runtime_pair")

def py_library(**attrs):
    native.py_library(**attrs)

def py_binary(**attrs):
    native.py_binary(**attrs)

def py_test(**attrs):
    native.py_test(**attrs)

def py_runtime(**attrs):
    native.py_runtime(**attrs)

py_runtime_pair = _py_runtime_pair
