#!/bin/sh
# Stand-in for Bazel's coverage tools (a Java archive Bazel would download):
# `bazel coverage` is not supported offline in this checkout.
echo "remote_coverage_tools stand-in: bazel coverage is not supported here" >&2
exit 1
