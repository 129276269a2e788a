"""The embedded MQTT broker: a private Mosquitto on loopback for tests and the demo.

A user's own broker (Mosquitto, EMQX) is used instead by setting `mqtt.embedded = false` and the
broker's host and port.
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


class BrokerError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Broker:
    directory: Path
    port: int = 51883
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", self.directory.resolve())

    @property
    def pid_file(self) -> Path:
        return self.directory / "mosquitto.pid"

    def _write_config(self) -> Path:
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {data}/\n"
            f"log_dest file {self.directory / 'mosquitto.log'}\n"
            "max_queued_messages 100000\n"
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
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def start(self) -> bool:
        """Start Mosquitto; False when it was already running."""
        if self.pid() is not None:
            return False
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise BrokerError("Mosquitto is not installed: run `make setup`")
        conf = self._write_config()
        argv = [binary, "-c", str(conf)]
        if os.geteuid() == 0:
            # Mosquitto would switch to its own user and lose access to this directory.
            conf.write_text(conf.read_text() + "user root\n")
        stderr_path = self.directory / "mosquitto.stderr"
        with stderr_path.open("wb") as stderr:
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        self.pid_file.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err = stderr_path.read_text(errors="replace")
                raise BrokerError(f"Mosquitto exited at start: {err.strip()}")
            if self._accepting():
                return True
            time.sleep(0.05)
        raise BrokerError(f"Mosquitto did not accept connections on {self.host}:{self.port} within 10 s")

    def stop(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                # Reap it when this process started it: an exited child still answers kill(pid, 0).
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            except ChildProcessError:
                pass  # started by another process: watch it with kill(pid, 0)
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True
