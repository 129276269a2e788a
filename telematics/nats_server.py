"""The embedded NATS server: a private nats-server with JetStream on loopback, for the distributed
mode's tests, benchmark and demo (`telematics nats start`).

A production cluster runs its own nats-server cluster (three or more nodes, replicated streams) and
sets `cluster.embedded = false` and `cluster.nats_url`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


class NatsServerError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class NatsServer:
    directory: Path
    port: int = 54222
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", self.directory.resolve())

    @classmethod
    def for_url(cls, directory: Path, url: str) -> NatsServer:
        parts = urlsplit(url)
        return cls(directory, port=parts.port or 4222, host=parts.hostname or "127.0.0.1")

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.directory / "nats-server.pid"

    def _write_config(self) -> Path:
        store = self.directory / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "nats-server.conf"
        conf.write_text(
            f'listen: "{self.host}:{self.port}"\n'
            f'server_name: "telematics-{self.port}"\n'
            f'jetstream {{\n  store_dir: "{store}"\n  max_memory_store: 256MB\n}}\n'
            "max_payload: 8MB\n"
            f'log_file: "{self.directory / "nats-server.log"}"\n'
        )
        return conf

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None and self._accepting()

    def _accepting(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                return s.recv(4).startswith(b"INFO")  # a NATS server greets first
        except OSError:
            return False

    def start(self) -> bool:
        """Start nats-server; False when it was already running."""
        if self.pid() is not None:
            return False
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not Path(binary).exists():
            raise NatsServerError("nats-server is not installed: run `make setup`")
        conf = self._write_config()
        stderr_path = self.directory / "nats-server.stderr"
        with stderr_path.open("wb") as stderr:
            proc = subprocess.Popen(
                [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                log = self.directory / "nats-server.log"
                detail = (log.read_text(errors="replace")[-2000:] if log.exists() else "") or stderr_path.read_text()
                raise NatsServerError(f"nats-server exited at start: {detail.strip()}")
            if self._accepting():
                return True
            time.sleep(0.05)
        raise NatsServerError(f"nats-server did not accept connections on {self.host}:{self.port} within 15 s")

    def stop(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our child: reap it
                    break
            except ChildProcessError:
                pass
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True
