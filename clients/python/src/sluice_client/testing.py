"""A real Sluice server for tests: ``with SluiceServer() as server: SluiceClient(server.url)``.

It runs ``sluice serve`` from a checkout of the Sluice repository (``repo``, else
``$SLUICE_REPO``, else the checkout this package sits in) with Node: through tsx from the sources
when the checkout has its dev dependencies, else the built ``dist/``. Each server gets a free
port on 127.0.0.1 and a temporary data folder (a SQLite event store), optionally a tokens file,
and is stopped (SIGTERM, then SIGKILL) when the block ends. Test an integration against this,
never against a stand-in: it is the same server a deployment runs.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

ROLES = ("viewer", "worker", "admin")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_repo(repo: str | os.PathLike[str] | None) -> Path:
    """The Sluice checkout: the argument, else $SLUICE_REPO, else the one this package sits in."""
    candidates: list[Path] = []
    if repo is not None:
        candidates.append(Path(repo))
    elif os.environ.get("SLUICE_REPO"):
        candidates.append(Path(os.environ["SLUICE_REPO"]))
    else:
        candidates.extend(Path(__file__).resolve().parents)
    for candidate in candidates:
        if (candidate / "src" / "cli.ts").is_file() or (candidate / "dist" / "src" / "cli.js").is_file():
            return candidate.resolve()
    raise FileNotFoundError(
        "no Sluice checkout found: pass repo=PATH or set SLUICE_REPO to a clone of the Sluice "
        f"repository (looked in {', '.join(str(c) for c in candidates[:3])})"
    )


def serve_command(repo: Path) -> list[str]:
    node = shutil.which("node")
    if node is None:
        raise FileNotFoundError("node is not on PATH: Sluice needs Node 20 or later")
    if (repo / "node_modules" / "tsx").is_dir() and (repo / "src" / "cli.ts").is_file():
        return [node, "--import", "tsx", "src/cli.ts", "serve"]
    if (repo / "dist" / "src" / "cli.js").is_file():
        return [node, "dist/src/cli.js", "serve"]
    raise FileNotFoundError(f"{repo}: run `npm ci` (or `npm run build`) there first")


class SluiceServer:
    """One `sluice serve` process for a test.

    ``tokens``: token names and their roles (e.g. ``{"ops": "admin", "dash": "viewer"}``); with
    it the server requires tokens, and ``server.tokens[name]`` is each one's secret. ``config``:
    a concurrency config file (CONCURRENCY_CONFIG: sluice.yaml or Dagster's dagster.yaml).
    ``env``: more environment variables for the server (e.g. ``{"LOG_LEVEL": "debug"}``).
    """

    def __init__(
        self,
        repo: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        tokens: Mapping[str, str] | None = None,
        config: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        ready_timeout: float = 60.0,
    ) -> None:
        self.repo = find_repo(repo)
        self.port = port or free_port()
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="sluice-test-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ready_timeout = ready_timeout
        self.tokens: dict[str, str] = {}
        self._tokens_file: Path | None = None
        if tokens is not None:
            self._tokens_file = self._write_tokens(tokens)
        self._config = None if config is None else str(Path(config).resolve())
        self._extra_env = dict(env or {})
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The GraphQL endpoint, e.g. http://127.0.0.1:PORT/graphql."""
        return f"http://127.0.0.1:{self.port}/graphql"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def event_store_url(self) -> str:
        return f"sqlite:{self.data_dir / 'sluice.db'}"

    def _write_tokens(self, tokens: Mapping[str, str]) -> Path:
        lines: list[str] = []
        for name, role in tokens.items():
            if role not in ROLES:
                raise ValueError(f"token {name}: role must be one of {', '.join(ROLES)}, got {role!r}")
            secret = f"sluice_{secrets.token_urlsafe(32)}"
            self.tokens[name] = secret
            lines.append(f"{name} {role} {hashlib.sha256(secret.encode()).hexdigest()}")
        path = self.data_dir / "tokens"
        path.write_text("\n".join(lines) + "\n")
        return path

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "PORT": str(self.port),
                "HOST": "127.0.0.1",
                "EVENT_STORE_URL": self.event_store_url,
                "CONCURRENCY_CONFIG": self._config or "",
                "CHECKPOINT_PATH": "",
                "NODE_ENV": "test",
                "SLUICE_TOKENS_FILE": str(self._tokens_file) if self._tokens_file else "",
            }
        )
        env.update(self._extra_env)
        return env

    def start(self) -> SluiceServer:
        """Starts the server and waits until it answers GET /ready."""
        if self.running:
            return self
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            serve_command(self.repo),
            cwd=self.repo,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            process = self._process
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                raise RuntimeError(
                    f"sluice serve exited (code {code}) before it was ready\n{self.log_tail()}"
                )
            try:
                response = httpx.get(f"{self.base_url}/ready", timeout=2.0)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as error:
                last = repr(error)
            time.sleep(0.1)
        raise TimeoutError(f"sluice serve not ready after {self.ready_timeout} s ({last})\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; the exit code."""
        process = self._process
        code = None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            code = process.returncode
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def kill(self) -> None:
        """SIGKILL: a crash, for tests of what survives one."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self.stop()

    def restart(self) -> SluiceServer:
        """Stops and starts again on the same port and data (clients keep their URL)."""
        self.stop()
        return self.start()

    def __enter__(self) -> SluiceServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
