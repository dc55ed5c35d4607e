"""Stack: PostgreSQL + Redis for the service, embedded or attached by URL, seeded and health-checked."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import psutil
import redis

from workbench import _process
from workbench._aio import run_sync
from workbench._errors import InputError, StackError
from workbench._net import check_url, free_port, wait_for_port
from workbench.paths import project_dir
from workbench.postgres import DEFAULT_MAX_CONNECTIONS, EmbeddedPostgres
from workbench.redis import EmbeddedRedis
from workbench.seed import connect, max_connections, seed

DEFAULT_USERS = 100_000
STATE_FILE = "state.json"


def stack_dir() -> Path:
    """Where embedded servers keep their data: data/stack, or elsewhere when PostgreSQL's user can't reach it."""
    if env := os.environ.get("WORKBENCH_STACK_DIR"):
        return Path(env).resolve()
    here = project_dir() / "data" / "stack"
    user = _process.unprivileged_user()
    if _process.reachable_by(here.parent, user):
        return here
    digest = hashlib.sha1(str(here).encode()).hexdigest()[:10]
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

    def __post_init__(self) -> None:
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
            if not self.database_url:
                self._postgres = EmbeddedPostgres(
                    self.root / "postgres", max_connections=self.max_connections
                )
                self._postgres.start(detach=detach)
                self.database_url = self._postgres.url
                self.progress(f"PostgreSQL (embedded) on {self.database_url}")
            if not self.redis_url:
                self._redis = EmbeddedRedis(self.root / "redis")
                self._redis.start(detach=detach)
                self.redis_url = self._redis.url
                self.progress(f"Redis (embedded Valkey) on {self.redis_url}")
            if not self.upstream_url:
                self._start_upstream(detach=detach)
            self.check()
            seed(
                self.url,
                users=self.users,
                statement_stats=self._postgres is not None,  # only on a server of our own
                progress=self.progress,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _start_upstream(self, *, detach: bool) -> None:
        """The fake upstream HTTP service (service.upstream_fake) on a free port."""
        port = free_port()
        argv = [sys.executable, "-m", "service.upstream_fake", "--port", str(port)]
        argv += ["--delay", str(self.upstream_delay)]
        self._upstream = _process.spawn(argv, log=self.root / "upstream.log", detach=detach)
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

    # --- faults (workbench.faults): stop a server and start it again on the same port ----
    def stop_server(self, name: str) -> None:
        """Stop one embedded server (postgres, redis, upstream); start_server brings it back."""
        if name == "upstream" and self._upstream is not None:
            _process.stop(self._upstream, timeout=5)
        else:
            self._embedded(name).stop()

    def start_server(self, name: str) -> None:
        """Start again, on the same port and data, a server stopped by stop_server."""
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
            raise StackError(f"PostgreSQL at {self.url} does not answer: {exc}") from None
        try:
            client = redis.Redis.from_url(self.redis, socket_timeout=3)
            info = client.info("server")
            client.close()
        except redis.RedisError as exc:
            raise StackError(f"Redis at {self.redis} does not answer: {exc}") from None
        return {"postgres": version, "redis": str(info.get("redis_version", "?"))}

    def connection_limit(self) -> int:
        """PostgreSQL's max_connections."""
        return max_connections(self.url)

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
        """Write the URLs and pids of a detached stack to data/stack/state.json."""
        path = self.root / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "database_url": self.url,
            "redis_url": self.redis,
            "upstream_url": self.upstream_url,
            "pids": self.pids(),
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(path)
        return path


class CorruptState(StackError):
    """state.json of a detached stack cannot be read: the message says which file and what to do."""


def read_state(root: Path | None = None) -> dict[str, object] | None:
    """The state of a detached stack, or None when none is up; CorruptState when unreadable."""
    root = root or stack_dir()
    path = root / STATE_FILE
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
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
    return state


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
    return None


def stop_detached(root: Path | None = None) -> list[str]:
    """Stop a detached stack's servers and forget it; the names of the servers stopped."""
    root = root or stack_dir()
    state = read_state(root)
    stopped = []
    if state:
        pids = state.get("pids") or {}
        assert isinstance(pids, dict)
        for name, pid in pids.items():
            if psutil.pid_exists(pid):
                _process.stop_pid(pid, sig=2 if name == "postgres" else 15)
                stopped.append(name)
        (root / STATE_FILE).unlink(missing_ok=True)
    return stopped


async def _pg_version(url: str) -> str:
    conn = await connect(url)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()
