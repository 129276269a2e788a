"""The real server as a child process (`telematics serve`), for tests that kill it, stop its database
or restart it on the same ports. Everything is bounded by timeouts: a test never hangs on it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import psycopg

from telematics.config import Settings

ROOT = Path(__file__).resolve().parents[1]
TELEMATICS = ROOT / ".venv" / "bin" / "telematics"


def listening_sections() -> list[str]:
    """Every settings table the server listens with (terminal ports, OsmAnd, the API...): read from
    the settings themselves, so a listener added later gets a free port here too, not its default."""
    defaults = Settings()
    return [
        f.name
        for f in fields(defaults)
        if f.name != "mqtt"
        and hasattr(getattr(defaults, f.name), "host")
        and hasattr(getattr(defaults, f.name), "port")
    ]


def free_port() -> int:
    """A port nobody listens on right now (the kernel's pick for port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_dbname(dsn: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})


@contextlib.contextmanager
def scratch_database(admin_dsn: str, prefix: str) -> Iterator[str]:
    """A database of its own in the shared embedded cluster (for server processes); dropped after."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        yield with_dbname(admin_dsn, name)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def rss_kb(pid: int) -> int:
    """Resident set size of a process in KiB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def children(pid: int) -> list[int]:
    """Direct children of a process, from /proc (a PostgreSQL postmaster's backends and workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # Fields after the command name, which is in parentheses and may itself hold spaces or ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def process_state(pid: int) -> str:
    """One letter: R, S, D, T (stopped), Z..."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


class ServerProcess:
    """`telematics serve --config <toml>` on fixed free ports, a state directory under var/, and a DSN.

    `start` may be called again after `kill`: the same ports, the same database, a new process.
    """

    def __init__(
        self,
        dsn: str,
        token: str,
        *,
        ingest: dict[str, int] | None = None,
        role: str = "all",
        extra: str = "",
        mqtt_port: int | None = None,
    ) -> None:
        """`role`: `serve --role` (a part of the distributed mode); `extra`: more TOML, e.g. a [cluster] table;
        `mqtt_port`: phones over MQTT from a broker already running there (else no MQTT)."""
        self.dsn = dsn
        self.token = token
        self.role = role
        (ROOT / "var" / "tmp").mkdir(parents=True, exist_ok=True)
        self.state_dir = Path(tempfile.mkdtemp(prefix="durability-", dir=ROOT / "var" / "tmp"))
        self.ports = {name: free_port() for name in listening_sections()}
        self.log_path = self.state_dir / "server.log"
        self.config = self.state_dir / "telematics.toml"
        self.proc: subprocess.Popen[bytes] | None = None
        ingest_settings = {"batch_max_delay_ms": 5, **(ingest or {})}
        lines = [
            f'state_dir = "{self.state_dir}"',
            'log_level = "INFO"',
            *(f'[{name}]\nhost = "127.0.0.1"\nport = {port}' for name, port in self.ports.items()),
            "[ingest]",
            *(f"{k} = {v}" for k, v in ingest_settings.items()),
            "[mqtt]",
            *(["enabled = false"] if mqtt_port is None else ["embedded = false", f"port = {mqtt_port}"]),
            extra,
        ]
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        """Everything every process started by this object wrote (stdout and stderr)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, n: int = 3000) -> str:
        return self.log()[-n:]

    def _spawn(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:  # appended: the log of a killed process stays readable
            return subprocess.Popen(
                [str(TELEMATICS), "--config", str(self.config), "serve", "--role", self.role],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.state_dir,
                env=env,
            )

    async def start(self, within: float = 30.0) -> None:
        """Start the process and return once it printed its banner (listeners and API are up)."""
        assert not self.alive()
        env = {k: v for k, v in os.environ.items() if k != "TELEMATICS_CONFIG"}
        env["TELEMATICS_DSN"] = self.dsn
        env["TELEMATICS_API_TOKEN"] = self.token
        already = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.proc = self._spawn(env)
        deadline = time.monotonic() + within
        while True:
            with self.log_path.open("rb") as f:
                f.seek(already)
                # Printed after every listener and the API are up (a part without terminals: its role).
                if (b"Terminals:" if self.role == "all" else b"Role:") in f.read():
                    return
            if not self.alive():
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"server did not start within {within} s:\n{self.log_tail()}")
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no clean-up, nothing pending is written."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    async def stop(self, within: float = 20.0) -> int:
        """SIGTERM and wait (the server writes what is pending first); its exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + within
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"server did not stop within {within} s:\n{self.log_tail()}")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.kill()
        shutil.rmtree(self.state_dir, ignore_errors=True)
