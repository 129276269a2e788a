"""The embedded MQTT broker: a private Mosquitto on loopback for tests and the demo.

A user's own broker (Mosquitto, EMQX) is used instead by setting `mqtt.embedded = false` and the
broker's host and port.
"""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from telematics import daemon


class BrokerError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Broker(daemon.Embedded):
    port: int = 51883
    name = "mosquitto"

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
        if os.geteuid() == 0:
            # Mosquitto would switch to its own user and lose access to this directory.
            conf.write_text(conf.read_text() + "user root\n")
        daemon.start([binary, "-c", str(conf)], self.pid_file, self.directory / "mosquitto.stderr",
                     self._accepting, name="Mosquitto", error=BrokerError, within=10)  # fmt: skip
        return True
