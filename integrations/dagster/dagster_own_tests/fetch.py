"""Makes Dagster's own tests importable: `python -m dagster_own_tests.fetch`.

Dagster publishes its test suite (the `dagster_tests` package) in its source distribution on the
package index, not in its wheel. This downloads the source distribution of the Dagster release
installed in this environment, extracts `dagster_tests` alone into
`<venv>/dagster-own-tests/<version>/`, and puts that folder on the environment's import path with a
`.pth` file, so pytest here, and the run workers and step processes Dagster's executors start,
import Dagster's test modules by their own names. The files are read where they lie, never copied
into this repository.

Idempotent: when the installed release's tests are already in place it only checks the `.pth`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from pathlib import Path

import dagster

PACKAGE = "dagster_tests"
PTH_NAME = "dagster-own-tests.pth"


def tests_root(version: str) -> Path:
    return Path(sys.prefix) / "dagster-own-tests" / version


def download_sdist(version: str, into: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            "dagster",
            "--dest",
            str(into),
            f"dagster=={version}",
        ],
        check=True,
    )
    found = sorted(into.glob(f"dagster-{version}.tar.gz"))
    if not found:
        raise RuntimeError(f"pip download gave no dagster-{version}.tar.gz in {into}")
    return found[0]


def extract_tests(sdist: Path, version: str, target: Path) -> None:
    prefix = f"dagster-{version}/{PACKAGE}/"
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if m.name.startswith(prefix)]
        if not members:
            raise RuntimeError(
                f"{sdist.name} holds no {PACKAGE}/: Dagster's source distributions carry its tests "
                "only in recent releases (1.13 does, 1.10 to 1.12 do not); install a newer Dagster "
                "to run its own tests here"
            )
        for member in members:
            member.name = member.name[len(f"dagster-{version}/") :]
        archive.extractall(staging, members=members, filter="data")
    # Renamed into place only whole, so an interrupted fetch is never taken for a finished one.
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def ensure() -> Path:
    version = dagster.__version__
    root = tests_root(version)
    if not (root / PACKAGE / "__init__.py").is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as scratch:
            sdist = download_sdist(version, Path(scratch))
            extract_tests(sdist, version, root)
        print(f"dagster-own-tests: Dagster {version}'s own tests extracted to {root}")
    pth = Path(sysconfig.get_paths()["purelib"]) / PTH_NAME
    if not pth.is_file() or pth.read_text().strip() != str(root):
        pth.write_text(f"{root}\n")
    return root


if __name__ == "__main__":
    ensure()
