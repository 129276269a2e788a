"""The embedded NATS server: a private nats-server with JetStream on loopback, for the distributed
mode's tests, benchmark and demo (`telematics nats start`).

A production cluster runs its own nats-server cluster (three or more nodes, replicated streams) and
sets `cluster.embedded = false` and `cluster.nats_url`.
"""

from __future__ import annotations

import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from telematics import daemon


class NatsServerError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class NatsServer(daemon.Embedded):
    port: int = 54222
    name = "nats-server"

    @classmethod
    def for_url(cls, directory: Path, url: str) -> NatsServer:
        parts = urlsplit(url)
        return cls(directory, port=parts.port or 4222, host=parts.hostname or "127.0.0.1")

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def _write_config(self) -> Path:
        store = self.directory / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "nats-server.conf"
        conf.write_text(
            f'listen: "{self.host}:{self.port}"\n'
            f'server_name: "telematics-{self.port}"\n'
            f'jetstream {{\n  store_dir: "{store}"\n  max_memory_store: 256MB\n}}\n'
            "max_payload: 8MB\n"
        )
        return conf

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
        daemon.start([binary, "-c", str(conf)], self.pid_file, self.directory / "nats-server.stderr",
                     self._accepting, name="nats-server", error=NatsServerError)  # fmt: skip
        return True
