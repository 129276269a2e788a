"""The embedded database: a private PostgreSQL 15 cluster with TimescaleDB under the data directory.

It listens on loopback only, on its own port, with trust authentication for the loopback
addresses: it is a development and demo database. Production points the DSN at a managed one.
PostgreSQL refuses to run as root, so when the server is started as root the cluster runs as the
`postgres` system user (created by Debian's package) and its files belong to that user.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path(os.environ.get("TELEMATICS_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "telematics"


class ClusterError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Cluster:
    directory: Path  # holds data/, the log and the socket directory
    port: int = 55432
    database: str = "telematics"
    link: Path | None = None  # the configured path, when the cluster had to live elsewhere

    def __post_init__(self) -> None:
        # The server runs pg_ctl from anywhere: every path it is given must be absolute.
        object.__setattr__(self, "directory", self.directory.resolve())

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "postgresql.log"

    @property
    def socket_dir(self) -> Path:
        return self.directory / "run"

    @property
    def dsn(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{self.database}"

    def _as_owner(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        return ["runuser", "-u", "postgres", "--", *argv]

    def _run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self._as_owner(argv), capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            raise ClusterError(f"{Path(argv[0]).name} failed: {(result.stderr or result.stdout).strip()}")
        return result

    def _check_binaries(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise ClusterError(f"PostgreSQL 15 is not installed ({PG_BIN}/initdb is missing): run `make setup`")

    def initialised(self) -> bool:
        return (self.data / "PG_VERSION").exists()

    def init(self) -> None:
        self._check_binaries()
        if os.geteuid() == 0:
            self._make_reachable_as_postgres()
            if self.initialised():  # made for an earlier checkout at the same path: use it again
                return
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for path in (self.directory, self.socket_dir):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        self._run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "shared_preload_libraries": "'timescaledb'",
            "timescaledb.telemetry_level": "off",
            "max_connections": "200",
            "shared_buffers": "512MB",
            "synchronous_commit": "on",
            "wal_compression": "on",
            "checkpoint_timeout": "15min",
            "max_wal_size": "4GB",
            "logging_collector": "off",
        }
        conf = "".join(f"{k} = {v}\n" for k, v in settings.items())
        auto = self.data / "postgresql.auto.conf"
        with auto.open("a") as f:
            f.write(conf)

    def _make_reachable_as_postgres(self) -> None:
        """When the project lives where `postgres` cannot enter (say under /root), keep the cluster in
        postgres's home instead and leave a symlink at the configured place."""
        parent = self.directory.parent
        parent.mkdir(parents=True, exist_ok=True)
        probe = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(parent)], check=False)
        if probe.returncode == 0:
            return
        home = Path(pwd.getpwnam("postgres").pw_dir)
        real = home / "telematics" / hashlib.sha1(str(self.directory).encode()).hexdigest()[:12]
        real.mkdir(parents=True, exist_ok=True)
        owner = pwd.getpwnam("postgres")
        os.chown(real.parent, owner.pw_uid, owner.pw_gid)
        if self.directory.is_symlink() or self.directory.exists():
            raise ClusterError(f"{self.directory} exists but is not a cluster the postgres user can reach")
        self.directory.symlink_to(real, target_is_directory=True)
        object.__setattr__(self, "link", self.directory)
        object.__setattr__(self, "directory", real)

    def running(self) -> bool:
        if not self.initialised():
            return False
        result = self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status"], check=False)
        return result.returncode == 0

    def start(self) -> bool:
        """Start the cluster (initialising it first); False when it was already running."""
        if not self.initialised():
            self.init()
        if self.running():
            return False
        result = self._run(
            [
                *(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60"),
                # Port and socket directory follow the settings, not the state at initdb time.
                *("-o", f"-p {self.port} -k {self.socket_dir}", "start"),
            ],
            check=False,
        )
        if result.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise ClusterError(f"PostgreSQL did not start: {result.stderr.strip()}\n{tail}")
        self._ensure_database()
        return True

    def _ensure_database(self) -> None:
        psql = [str(PG_BIN / "psql"), "-h", str(self.socket_dir), "-p", str(self.port), "-U", SUPERUSER]
        exists = self._run(
            [*psql, "-d", "postgres", "-tAc", f"select 1 from pg_database where datname = '{self.database}'"]
        )
        if exists.stdout.strip() != "1":
            self._run([*psql, "-d", "postgres", "-c", f'create database "{self.database}"'])

    def stop(self) -> bool:
        if not self.running():
            return False
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])
        return True

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
        if self.link is not None:
            self.link.unlink(missing_ok=True)
