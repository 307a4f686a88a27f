#!/usr/bin/env bash
# Runs dagster-sluice's tests on another Dagster release (default: the newest 1.10; `1.13` is the
# newest of all, where npm test's environment holds the newest dagster-postgres allows) beside the
# one npm test uses, in a virtual environment of its own (.ci/dagster<RELEASE>/venv, git-ignored), so
# `.venv` stays as it was. Dagster's own tests (dagster_own_tests) come from the release's source
# distribution, which carries them only from 1.13 on: for older releases only dagster-sluice's
# own tests run.
#
#   scripts/test-on-dagster.sh [RELEASE] [pytest arguments...]     e.g. scripts/test-on-dagster.sh 1.10
set -euo pipefail
cd "$(dirname "$0")/.."
release="${1:-1.10}"
shift || true
venv=".ci/dagster${release}/venv"
# The marker is written only after a whole install, so an interrupted one is redone.
if [ ! -f "${venv}/.installed" ]; then
  rm -rf "${venv}"
  python3 -m venv "${venv}"
  "${venv}/bin/pip" install --quiet --upgrade pip
  # The dev extras' tools, but not dagster-postgres: its releases pin one Dagster release each and
  # lag Dagster's own, so with it the newest Dagster could not be chosen (its test is skipped).
  "${venv}/bin/pip" install --quiet -e clients/python -e integrations/dagster pytest ruff pyright \
    "dagster==${release}.*" "dagster-graphql==${release}.*"
  touch "${venv}/.installed"
fi
installed="$("${venv}/bin/python" -c 'import dagster; print(dagster.__version__)')"
echo "test-on-dagster: Dagster ${installed} in ${venv}"

# With pytest arguments, those choose the tests; without, every folder that can run.
args=("$@")
if [ ${#args[@]} -eq 0 ]; then
  args=(dagster_sluice_tests)
  if (cd integrations/dagster && "../../${venv}/bin/python" -m dagster_own_tests.fetch); then
    args+=(dagster_own_tests)
  else
    echo "test-on-dagster: Dagster ${installed}'s own tests are not published; running dagster-sluice's only"
  fi
fi
cd integrations/dagster
PATH="${PWD}/../../${venv}/bin:${PATH}" VIRTUAL_ENV="${PWD}/../../${venv}" SLUICE_REPO="${PWD}/../.." \
  "../../${venv}/bin/python" -m pytest -p no:cacheprovider "${args[@]}"
