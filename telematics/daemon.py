"""A private server process of the project's (Mosquitto, nats-server): started detached with a pid
file in its directory, found again by any later `telematics` command, stopped with SIGTERM.

The zombie problem: the process that starts one is its parent until it exits, so a daemon that
stops while its starter lives would stay a zombie; it is started through a short-lived intermediate
child (a double fork), so init adopts it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def running_pid(pid_file: Path) -> int | None:
    """The pid in the file, if that process is alive."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def start(
    argv: list[str],
    pid_file: Path,
    log: Path,
    accepting: Callable[[], bool],
    *,
    name: str,
    error: type[Exception],
    within: float = 15.0,
) -> None:
    """Start `argv` detached (its output to `log`), record its pid, return once `accepting()`; `error` with
    the log's end when it exits or does not accept in time."""
    launcher = (
        "import subprocess, sys\n"
        "with open(sys.argv[1], 'ab') as log:\n"
        "    p = subprocess.Popen(sys.argv[3:], stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)\n"
        "open(sys.argv[2], 'w').write(f'{p.pid}\\n')\n"
    )
    subprocess.run([sys.executable, "-c", launcher, str(log), str(pid_file), *argv], check=True)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if running_pid(pid_file) is None:
            detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise error(f"{name} exited at start: {detail.strip()}")
        if accepting():
            return
        time.sleep(0.05)
    raise error(f"{name} did not accept connections within {within:.0f} s")


def stop(pid_file: Path, within: float = 10.0) -> bool:
    """SIGTERM and wait for it to exit; False when it was not running."""
    pid = running_pid(pid_file)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:  # started by this process before the double fork
                break
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.05)
    pid_file.unlink(missing_ok=True)
    return True


@dataclass(frozen=True, slots=True)
class Embedded:
    """A private server on loopback under `directory`: the part every kind shares."""

    directory: Path
    port: int
    host: str = "127.0.0.1"
    name = "server"  # the program, for its pid file and messages

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", self.directory.resolve())

    @property
    def pid_file(self) -> Path:
        return self.directory / f"{self.name}.pid"

    def pid(self) -> int | None:
        return running_pid(self.pid_file)

    def running(self) -> bool:
        return self.pid() is not None and self._accepting()

    def _accepting(self) -> bool:
        raise NotImplementedError

    def stop(self) -> bool:
        return stop(self.pid_file)
