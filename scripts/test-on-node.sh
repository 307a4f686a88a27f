#!/usr/bin/env bash
# Runs the vitest suite on another Node.js major (default 24) beside the machine's own, without
# touching the project's node_modules: the Node binary comes from the npm registry (the
# node-linux-<arch> package, the one the `node` package installs), the project is copied to
# .ci/node<major>/work with node_modules hard-linked, and better-sqlite3 (the one native module
# the suites load) is rebuilt there for that Node's ABI against the headers the package ships.
#
#   scripts/test-on-node.sh [MAJOR] [vitest arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
major="${1:-24}"
shift || true
case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64) arch=arm64 ;;
  *) echo "test-on-node: no Node binary package for $(uname -m)" >&2; exit 1 ;;
esac
base=".ci/node${major}"
pkg="node-linux-${arch}"
nodedir="${PWD}/${base}/node_modules/${pkg}"
if [ ! -x "${nodedir}/bin/node" ]; then
  npm install --prefix "${base}" --no-save --no-audit --no-fund "${pkg}@${major}"
fi
echo "test-on-node: $("${nodedir}/bin/node" --version) from ${pkg}"

work="${base}/work"
rm -rf "${work}"
mkdir -p "${work}"
# The project without its git data, its build output and this folder; node_modules as hard links.
tar --exclude=./.git --exclude=./.ci/node* --exclude=./node_modules --exclude=./dist --exclude=.venv \
  --exclude=__pycache__ -cf - . | tar -xf - -C "${work}"
cp -al node_modules "${work}/node_modules"
# A copy of its own (not links), so rebuilding leaves the machine's Node build as it was.
rm -rf "${work}/node_modules/better-sqlite3"
cp -r node_modules/better-sqlite3 "${work}/node_modules/better-sqlite3"
# node-gyp as npm bundles it; the Node package's own headers, so nothing is downloaded.
gyp="$(npm root -g)/npm/node_modules/node-gyp/bin/node-gyp.js"
(
  cd "${work}/node_modules/better-sqlite3"
  rm -rf build
  PATH="${nodedir}/bin:${PATH}" npm_config_nodedir="${nodedir}" \
    "${nodedir}/bin/node" "${gyp}" \
    rebuild --release --nodedir="${nodedir}" >/dev/null
)
cd "${work}"
PATH="${PWD}/../node_modules/${pkg}/bin:${PATH}" node node_modules/vitest/vitest.mjs run "$@"
