"""Stack: PostgreSQL + Redis for the service, embedded or attached by URL, seeded and health-checked."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import redis

from workbench import _fs, _process, _secrets
from workbench._aio import run_sync
from workbench._errors import InputError, StackError
from workbench._net import check_url, free_port, wait_for_port
from workbench._secrets import mask_text, mask_url
from workbench.paths import project_dir
from workbench.postgres import DEFAULT_MAX_CONNECTIONS, EmbeddedPostgres
from workbench.redis import EmbeddedRedis
from workbench.seed import connect, max_connections, seed

DEFAULT_USERS = 100_000
STATE_FILE = "state.json"
# Held (a POSIX lock, which forked children do not inherit) by the process whose stack runs here.
LOCK_FILE = "stack.lock"
# Folders this process holds: POSIX locks do not exclude their own process, and closing any
# descriptor of the lock file would release it.
_HELD: set[Path] = set()


def stack_dir() -> Path:
    """Where embedded servers keep their data: data/stack, or elsewhere when PostgreSQL's user can't reach it."""
    if env := os.environ.get("WORKBENCH_STACK_DIR"):
        return Path(env).resolve()
    here = project_dir() / "data" / "stack"
    user = _process.unprivileged_user()
    if _process.reachable_by(here.parent, user):
        return here
    digest = hashlib.sha1(str(here).encode()).hexdigest()[:10]
    # A predictable name in a shared folder: Stack.start creates it as ours (_fs.private_dir)
    # and refuses it when another user made it first.
    return Path("/var/tmp") / f"fastapi-workbench-{digest}"


@dataclass
class Stack(_process.Managed):
    """PostgreSQL and Redis for the service: started here (embedded) or attached by URL."""

    database_url: str | None = None
    redis_url: str | None = None
    users: int = DEFAULT_USERS
    root: Path = field(default_factory=stack_dir)
    progress: Callable[[str], None] = print
    upstream_url: str | None = None
    upstream_delay: float = 0.005
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    _upstream: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _postgres: EmbeddedPostgres | None = field(default=None, init=False, repr=False)
    _redis: EmbeddedRedis | None = field(default=None, init=False, repr=False)
    _lock: int | None = field(default=None, init=False, repr=False)
    _limit: int | None = field(default=None, init=False, repr=False)  # max_connections, asked once

    def __post_init__(self) -> None:
        # a URL masked by a parent process (report.execute) comes back with its password
        self.database_url = _secrets.reveal(self.database_url)
        self.redis_url = _secrets.reveal(self.redis_url)
        given = (self.database_url, self.redis_url)
        self.database_url = self.database_url or os.environ.get("DATABASE_URL") or None
        self.redis_url = self.redis_url or os.environ.get("REDIS_URL") or None
        self.upstream_url = self.upstream_url or os.environ.get("UPSTREAM_URL") or None
        if self.upstream_url:
            check_url("upstream_url", self.upstream_url, schemes=("http",))
        if isinstance(self.upstream_delay, bool) or not isinstance(
            self.upstream_delay, (int, float)
        ):
            raise InputError("upstream_delay", f"must be a number, got {self.upstream_delay!r}")
        if self.upstream_delay < 0:
            raise InputError("upstream_delay", f"must be >= 0, got {self.upstream_delay!r}")
        # name the environment variable when that is where a URL came from
        if self.database_url:
            name = "database_url" if self.database_url == given[0] else "DATABASE_URL"
            check_url(name, self.database_url, schemes=("postgresql", "postgres"))
        if self.redis_url:
            name = "redis_url" if self.redis_url == given[1] else "REDIS_URL"
            check_url(name, self.redis_url, schemes=("redis",))
        if isinstance(self.users, bool) or not isinstance(self.users, int) or self.users < 1:
            raise InputError("users", f"must be an integer >= 1, got {self.users!r}")

    # --- lifecycle ----------------------------------------------------------------------
    def start(self, *, detach: bool = False) -> Stack:
        """Start (or attach to) both servers, check them and seed the database."""
        try:
            if not (self.database_url and self.redis_url):
                server_user = _process.unprivileged_user()
                _fs.private_dir(self.root, mode=_fs.TRAVERSABLE if server_user else _fs.PRIVATE)
                if not self._attach_detached():
                    self._take_folder()
            # the fake upstream (a Python process) boots while the servers start
            upstream_port = None if self.upstream_url else self._spawn_upstream(detach=detach)
            if not self.database_url:
                self._postgres = EmbeddedPostgres(
                    self.root / "postgres",
                    max_connections=self.max_connections,
                    progress=self.progress,
                )
                self._postgres.start(detach=detach)
                self.database_url = self._postgres.url
                self.progress(f"PostgreSQL (embedded) on {mask_url(self.database_url)}")
            if not self.redis_url:
                self._redis = EmbeddedRedis(self.root / "redis")
                self._redis.start(detach=detach)
                self.redis_url = self._redis.url
                self.progress(f"Redis (embedded Valkey) on {mask_url(self.redis_url)}")
            if upstream_port is not None:
                self._wait_upstream(upstream_port)
            self.check()
            seed(
                self.url,
                users=self.users,
                statement_stats=self._postgres is not None,  # only on a server of our own
                progress=self.progress,
            )
            if detach:
                self.save_state()
                self._release_folder()  # the servers outlive us; state.json says who they are
        except BaseException:
            self.stop()
            raise
        return self

    def _attach_detached(self) -> bool:
        """Use the servers of a detached stack (`workbench stack up`) running on root; True if any."""
        state = read_state(self.root)
        if not state:
            return False
        if not state_alive(state):
            (self.root / STATE_FILE).unlink(missing_ok=True)  # its servers are gone
            return False
        self.database_url = self.database_url or str(state["database_url"])
        self.redis_url = self.redis_url or str(state["redis_url"])
        self.upstream_url = self.upstream_url or (str(state["upstream_url"] or "") or None)
        self.progress(f"attached to the stack running on {self.root} (`workbench stack up`)")
        return True

    def _take_folder(self) -> None:
        """Lock root for this process; StackError naming the process whose stack runs there."""
        if self.root.resolve() in _HELD:
            raise StackError(
                f"this process already runs a stack on {self.root}; use that one (or attach to "
                "its URLs), or give this one another folder"
            )
        path = self.root / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pid, holder = _holder(fd)
            os.close(fd)
            raise StackError(
                f"another stack runs on {self.root}: {holder}. Stop it (Ctrl-C where it runs, or "
                f"`kill {pid or 'PID'}`), or run `workbench stack up` once so that every command "
                "attaches to one stack, or set WORKBENCH_STACK_DIR to another folder"
            ) from None
        me = {"pid": os.getpid(), "command": " ".join(sys.argv)[:200]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self._lock = fd
        _HELD.add(self.root.resolve())

    def _release_folder(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._lock, 0)
            os.close(self._lock)  # closing releases the lock
            self._lock = None
            _HELD.discard(self.root.resolve())

    def _spawn_upstream(self, *, detach: bool) -> int:
        """Start the fake upstream HTTP service (service.upstream_fake); the free port it takes."""
        port = free_port()
        argv = [sys.executable, "-m", "service.upstream_fake", "--port", str(port)]
        argv += ["--delay", str(self.upstream_delay)]
        self._upstream = _process.spawn(argv, log=self.root / "upstream.log", detach=detach)
        return port

    def _wait_upstream(self, port: int) -> None:
        """Wait until the spawned fake upstream listens on port."""
        if not wait_for_port(port, timeout=10):
            raise StackError(f"the fake upstream did not listen on port {port}; see {self.root}")
        self.upstream_url = f"http://127.0.0.1:{port}"
        self.progress(f"upstream (fake, {self.upstream_delay * 1000:g} ms) on {self.upstream_url}")

    def stop(self) -> None:
        """Stop the servers this stack started; attached ones are left alone."""
        if self._upstream is not None:
            _process.stop(self._upstream, timeout=5)
            self._upstream = None
            self.upstream_url = None
        if self._redis is not None:
            self._redis.stop()
            self._redis = None
            self.redis_url = None
        if self._postgres is not None:
            self._postgres.stop()
            self._postgres = None
            self.database_url = None
        self._release_folder()

    # --- faults (workbench.faults): stop a server and start it again on the same port ----
    def stop_server(self, name: str) -> None:
        """Stop one embedded server (postgres, redis, upstream); start_server brings it back."""
        if name == "upstream" and self._upstream is not None:
            _process.stop(self._upstream, timeout=5)
        else:
            self._embedded(name).stop()

    def start_server(self, name: str) -> None:
        """Start again, on the same port and data, a server stopped by stop_server."""
        self._limit = None
        if name == "upstream" and self._upstream is not None:
            argv = [str(a) for a in self._upstream.args]  # type: ignore[union-attr]
            self._upstream = _process.spawn(argv, log=self.root / "upstream.log")
            port = int(argv[argv.index("--port") + 1])
            if not wait_for_port(port, timeout=10):
                raise StackError(f"the fake upstream did not listen again on port {port}")
        else:
            self._embedded(name).start()

    def _embedded(self, name: str) -> EmbeddedPostgres | EmbeddedRedis:
        server = {"postgres": self._postgres, "redis": self._redis}.get(name)
        if server is None:
            started = [n for n in ("postgres", "redis", "upstream") if n in self.pids()]
            raise InputError(
                "server",
                f"must be a server this stack started ({', '.join(started)}), got {name!r}",
            )
        return server

    # --- facts --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The PostgreSQL URL (raises when not started)."""
        if not self.database_url:
            raise StackError("the stack is not started")
        return self.database_url

    @property
    def redis(self) -> str:
        """The Redis URL (raises when not started)."""
        if not self.redis_url:
            raise StackError("the stack is not started")
        return self.redis_url

    def check(self) -> dict[str, str]:
        """Health of both servers: raise StackError naming the one that does not answer."""
        try:
            version = run_sync(_pg_version(self.url))
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise StackError(
                f"PostgreSQL at {mask_url(self.url)} does not answer: {mask_text(str(exc))}"
            ) from None
        try:
            client = redis.Redis.from_url(self.redis, socket_timeout=3)
            info = client.info("server")
            client.close()
        except redis.RedisError as exc:
            raise StackError(
                f"Redis at {mask_url(self.redis)} does not answer: {mask_text(str(exc))}"
            ) from None
        return {"postgres": version, "redis": str(info.get("redis_version", "?"))}

    def connection_limit(self) -> int:
        """PostgreSQL's max_connections (asked once per database: every service start checks it)."""
        if self._limit is None:
            self._limit = max_connections(self.url)
        return self._limit

    def pids(self) -> dict[str, int]:
        """Process ids of the servers this stack started."""
        out = {}
        if self._postgres and self._postgres.proc:
            out["postgres"] = self._postgres.proc.pid
        if self._redis and self._redis.proc:
            out["redis"] = self._redis.proc.pid
        if self._upstream:
            out["upstream"] = self._upstream.pid
        return out

    def env(self) -> dict[str, str]:
        """DATABASE_URL, REDIS_URL (and UPSTREAM_URL when there is one) for a service process."""
        env = {"DATABASE_URL": self.url, "REDIS_URL": self.redis}
        if self.upstream_url:
            env["UPSTREAM_URL"] = self.upstream_url
        return env

    # --- detached stacks (`workbench stack up | status | down`) ------------------------
    def save_state(self) -> Path:
        """Write the URLs (passwords masked) and pids of a detached stack to data/stack/state.json."""
        path = self.root / STATE_FILE
        pids = self.pids()
        state = {
            "database_url": mask_url(self.url),
            "redis_url": mask_url(self.redis),
            "upstream_url": self.upstream_url,
            "pids": pids,
            # so that `stack down` never signals a pid the system gave to another process since
            "started": {name: _process.started_at(pid) for name, pid in pids.items()},
        }
        _fs.write_private(path, json.dumps(state, indent=2))
        return path


class CorruptState(StackError):
    """state.json of a detached stack cannot be read: the message says which file and what to do."""


def read_state(root: Path | None = None) -> dict[str, object] | None:
    """The state of a detached stack (URLs with their password), or None when none is up;
    CorruptState when unreadable."""
    root = root or stack_dir()
    path = root / STATE_FILE
    if not os.path.lexists(path):
        return None
    try:
        state = json.loads(_fs.read_private(path, secret=False))
        problem = _state_problem(state)
    except (OSError, ValueError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem:
        raise CorruptState(
            f"the background stack's state file {path} is corrupt ({problem}). Its servers may "
            f"still run: find them with `pgrep -af {root}` (PostgreSQL, Valkey) and "
            "`pgrep -af service.upstream_fake` and stop them, then delete the file "
            f"(rm {path}) and start a stack again."
        )
    if _secrets.MASK in state["database_url"] + state["redis_url"]:
        password, _ = _secrets.stack_password(root)
        for key in ("database_url", "redis_url"):
            if _secrets.password_of(state[key]) == _secrets.MASK:
                state[key] = _secrets.with_password(state[key], password)
    return dict(state)


def _state_problem(state: object) -> str | None:
    """What is wrong with a parsed state.json, or None."""
    if not isinstance(state, dict):
        return f"expected a JSON object, got {type(state).__name__}"
    for key in ("database_url", "redis_url"):
        if not isinstance(state.get(key), str):
            return f"{key} is missing or not a string"
    pids = state.get("pids")
    if not isinstance(pids, dict) or not all(
        isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in pids.values()
    ):
        return "pids must map server names to process ids"
    started = state.get("started", {})
    if not isinstance(started, dict) or not all(
        t is None or isinstance(t, float) for t in started.values()
    ):
        return "started must map server names to start times"
    return None


def state_alive(state: dict[str, object]) -> bool:
    """True when every server a state lists is still the process that was recorded."""
    pids = state.get("pids") or {}
    started = state.get("started") or {}
    if not isinstance(pids, dict) or not isinstance(started, dict) or not pids:
        return False
    return all(
        isinstance(started.get(name), float) and _process.same_process(pid, started[name])
        for name, pid in pids.items()
    )


def stop_detached(root: Path | None = None) -> list[str]:
    """Stop a detached stack's servers and forget it; the names of the servers stopped.

    A pid is signalled only while it is the process recorded (same start time): pids are reused.
    """
    root = root or stack_dir()
    state = read_state(root)
    stopped = []
    if state:
        pids = state.get("pids") or {}
        started = state.get("started") or {}
        assert isinstance(pids, dict) and isinstance(started, dict)
        for name, pid in pids.items():
            when = started.get(name)
            if isinstance(when, float) and _process.same_process(pid, when):
                _process.stop_pid(pid, sig=2 if name == "postgres" else 15, started=when)
                stopped.append(name)
        (root / STATE_FILE).unlink(missing_ok=True)
    return stopped


def _holder(fd: int) -> tuple[int | None, str]:
    """Who holds a stack's lock file (pid, description), from what it wrote there."""
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, "a process that did not say which"
    command = info.get("command") or "?"
    return pid, f"pid {pid} (`{command}`)"


async def _pg_version(url: str) -> str:
    conn = await connect(url)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()
