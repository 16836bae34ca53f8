"""Stand-in for @rules_proto//proto:defs.bzl: Bazel 2.1's native proto rules.

@bazel_tools loads these names; this project builds no protocol buffers.
"""

def proto_lang_toolchain(**attrs):
    native.proto_lang_toolchain(**attrs)

def proto_library(**attrs):
    native.proto_library(**attrs)
