#!/usr/bin/env bash
# Installs Bazel 2.1.0 from the npm package that ships its Linux binary
# (@bazel/bazel-linux_x64) into .bazel/ of this checkout (git-ignored), and
# prints the binary's absolute path. Idempotent: a second run only prints it.
#
#   BAZEL="$(tools/bazel/install.sh)" && "$BAZEL" test --test_tag_filters=fast //...
#
# BAZEL_INSTALL_DIR overrides the install folder. npm's own configuration
# (registry, cache, proxy) applies as usual.
set -euo pipefail

VERSION=2.1.0
PACKAGE="@bazel/bazel-linux_x64@${VERSION}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PREFIX="${BAZEL_INSTALL_DIR:-${ROOT}/.bazel}"
BINARY="${PREFIX}/node_modules/@bazel/bazel-linux_x64/bazel-${VERSION}-linux-x86_64"

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "install.sh: the npm package holds a Linux x86_64 binary only" \
       "(this is $(uname -s)-$(uname -m))" >&2; exit 1 ;;
esac

if ! [[ -x "${BINARY}" ]] || ! "${BINARY}" --version >/dev/null 2>&1; then
  command -v npm >/dev/null || { echo "install.sh: npm not found" >&2; exit 1; }
  mkdir -p "${PREFIX}"
  # --prefix with its own package.json keeps npm from walking up to an
  # enclosing package; stdout goes to stderr so that stdout is the path only.
  [[ -f "${PREFIX}/package.json" ]] ||
    echo '{"name": "bazel-install", "private": true}' >"${PREFIX}/package.json"
  npm install --prefix "${PREFIX}" --no-audit --no-fund --no-save \
    "${PACKAGE}" >&2
  [[ -x "${BINARY}" ]] || { echo "install.sh: ${BINARY} missing after" \
    "npm install" >&2; exit 1; }
  "${BINARY}" --version >&2
fi
echo "${BINARY}"
