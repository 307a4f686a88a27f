"""A throwaway PostgreSQL cluster for the tests and the bench: Debian's binaries, a temporary
folder, a free port on 127.0.0.1, stopped and deleted at the end.

Its settings are PostgreSQL's defaults (fsync on, synchronous commits), as a deployment of
Dagster on PostgreSQL runs; only the port, the address and max_connections are set (each Dagster
process opens a pool of its own). `initdb` refuses to run as root, so as root the folder is
handed to the `postgres` user and the binaries run through `runuser -u postgres --`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from sluice_client.testing import free_port


def postgres_bin_dir() -> Path | None:
    """The newest installed /usr/lib/postgresql/<version>/bin, or None."""
    root = Path("/usr/lib/postgresql")
    if not root.is_dir():
        return None
    versions = [d for d in root.iterdir() if (d / "bin" / "initdb").exists() and d.name.isdigit()]
    if not versions:
        return None
    return max(versions, key=lambda d: int(d.name)) / "bin"


class PostgresCluster:
    def __init__(self) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise RuntimeError(
                "no PostgreSQL here: /usr/lib/postgresql/*/bin/initdb is missing (apt-get install postgresql)"
            )
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="coordinator-bench-pg-"))
        self.port = free_port()
        self._as_postgres = os.getuid() == 0
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        self.dir.chmod(0o700)

    @property
    def data(self) -> Path:
        return self.dir / "data"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresCluster:
        try:
            self._run(
                "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"
            )
            settings = f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
            settings += f"unix_socket_directories = '{self.dir}'\nmax_connections = 300\n"
            self._run("sh", "-c", f"printf '%s' \"$1\" >> {self.data}/postgresql.conf", "sh", settings)
            self._run(
                "pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w", "-t", "60", "start"
            )
        except BaseException:
            self.stop()
            raise
        return self

    def create_database(self, name: str) -> str:
        """A new database on the cluster; answers its URL."""
        self._run("createdb", "-h", str(self.dir), "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        path = program if program == "sh" else str(self.bin / program)
        command = ["runuser", "-u", "postgres", "--", path, *args] if self._as_postgres else [path, *args]
        result = subprocess.run(command, cwd=self.dir, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            log = self.dir / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            output = f"{result.stdout}\n{result.stderr}\n{tail}"
            raise RuntimeError(f"{program} {' '.join(args)} failed ({result.returncode}):\n{output}")
