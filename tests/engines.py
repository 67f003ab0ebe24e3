"""Real servers that the tests start for themselves, on loopback, and stop by pid.

PostgreSQL (a primary and a hot standby that lags by a chosen delay) is started by the
tests that need it (tests/distributed/test_replica_lag_real.py). A newcomer with
``redis-server`` installed runs the real-Redis tests without configuring anything: when ``REDIS_URL`` is not set, the root conftest.py starts a throwaway Redis here
(a free port, its files in a temporary directory, nothing saved to disk) and sets
``REDIS_URL`` for the whole session, pytest-xdist's workers included. A server that dies
during the run keeps its directory, and the path of its log is printed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

START_TIMEOUT_S = 10.0
IN_CI = os.environ.get("CI", "").lower() == "true"


def _missing(what: str) -> None:
    """Outside CI a test without its engine skips, saying what to install; in CI
    (``CI=true``) it fails."""
    if IN_CI:
        pytest.fail(f"CI=true: the real-engine tests must run, but {what}")
    pytest.skip(what)


def needs_redis_server() -> None:
    if not (shutil.which("redis-server") and shutil.which("redis-cli")):
        _missing("redis-server is not installed (apt-get install redis-server)")


def needs_postgres() -> None:
    try:
        postgres_bin("postgres")
    except FileNotFoundError as missing:
        _missing(str(missing))


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    directory: Path
    url: str

    @property
    def log(self) -> Path:
        return self.directory / f"{self.name}.log"

    def stop(self) -> str | None:
        """Stop it (SIGTERM, then SIGKILL); return a note if it had died on its own."""
        died = self.process.poll() is not None
        if not died:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if died:  # keep what it wrote, to find out why
            return f"{self.name} exited early (status {self.process.returncode}): {self.log}"
        shutil.rmtree(self.directory, ignore_errors=True)
        return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Link:
    """A TCP relay from a replica to its primary, that a test cuts at a chosen moment:
    from then on, what the primary sends is dropped, as on a broken network link (the
    replica does not know yet, and neither does the primary)."""

    def __init__(self, target_port: int) -> None:
        self.target_port, self.cut_off = target_port, threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self.cut_off.set()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                replica, _ = self.listener.accept()
            except OSError:
                return  # closed
            primary = socket.create_connection(("127.0.0.1", self.target_port))
            for source, sink in ((replica, primary), (primary, replica)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not self.cut_off.is_set():
                    sink.sendall(data)
        except OSError:
            pass


def start_redis(*options: str, port: int | None = None) -> Server:
    """A throwaway redis-server on 127.0.0.1 (on ``port``, else a free one), answering
    PING; raise if it does not. ``options``: more of redis-server's, e.g.
    ``"--replicaof", "127.0.0.1", "6380"``."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
    directory, port = Path(tempfile.mkdtemp(prefix="tests-redis-")), port or free_port()
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", str(directory),
         "--logfile", str(directory / "redis.log"),
         # A replica syncs at once, and a stop does not wait for replicas to catch up.
         "--repl-diskless-sync-delay", "0", "--shutdown-timeout", "0", *options],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = Server("redis", process, directory, f"redis://127.0.0.1:{port}/0")
    deadline = time.monotonic() + START_TIMEOUT_S
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
    try:
        while True:
            try:
                client.ping()
                return server
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    server.stop()
                    log = server.log.read_text() if server.log.exists() else "(no log)"
                    raise RuntimeError(f"redis-server did not start on port {port}:\n"
                                       f"{log[-2000:]}") from None
                time.sleep(0.05)
    finally:
        client.close()


# --- PostgreSQL: a throwaway primary, and a hot standby made with pg_basebackup ---------
# PostgreSQL refuses to run as root, and CI runs as root: then every server program runs as
# the `postgres` user that Debian's package creates (subprocess's user=).

PG_BIN = Path("/usr/lib/postgresql")


def postgres_bin(program: str) -> str:
    """A PostgreSQL server program: Debian keeps them off the PATH, per major version."""
    found = sorted(PG_BIN.glob(f"*/bin/{program}"), key=lambda p: int(p.parts[-3]))
    on_path = shutil.which(program)
    if found:
        return str(found[-1])
    if on_path:
        return on_path
    raise FileNotFoundError(f"{program} is not installed (apt-get install postgresql)")


def _as_server_user() -> dict[str, str]:
    return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}


def _owned_directory(prefix: str) -> Path:
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    return directory


def _run(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True, **_as_server_user())
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


def _start_postgres(name: str, data: Path, port: int, settings: dict[str, str]) -> Server:
    options = {"port": str(port), "listen_addresses": "127.0.0.1",
               "unix_socket_directories": str(data), "fsync": "off",
               "full_page_writes": "off", **settings}
    args = [postgres_bin("postgres"), "-D", str(data / "data")]
    for key, value in options.items():
        args += ["-c", f"{key}={value}"]
    log = (data / f"{name}.log").open("wb")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                               **_as_server_user())
    server = Server(name, process, data, f"postgresql://postgres@127.0.0.1:{port}/postgres")
    deadline = time.monotonic() + START_TIMEOUT_S * 3
    while True:
        ready = subprocess.run([postgres_bin("pg_isready"), "-h", "127.0.0.1", "-p",
                                str(port), "-q"], check=False)
        if ready.returncode == 0:
            return server
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"{name} did not start:\n{server.log.read_text()[-2000:]}")
        time.sleep(0.1)


def start_postgres() -> Server:
    """A throwaway primary on 127.0.0.1 (trust authentication, loopback only), its WAL
    detailed enough for logical decoding (CDC) and for a standby."""
    directory = _owned_directory("tests-postgres-")
    _run([postgres_bin("initdb"), "-D", str(directory / "data"), "-U", "postgres",
          "--auth=trust", "-E", "UTF8", "--no-sync"])
    return _start_postgres("postgres", directory, free_port(), {"wal_level": "logical"})


def start_standby(primary: Server, apply_delay_ms: int) -> Server:
    """A hot standby of ``primary`` that applies each commit ``apply_delay_ms`` late:
    a replica lag of a chosen, deterministic size."""
    directory = _owned_directory("tests-standby-")
    port = primary.url.rsplit(":", 1)[1].split("/")[0]
    _run([postgres_bin("pg_basebackup"), "-D", str(directory / "data"), "-h", "127.0.0.1",
          "-p", port, "-U", "postgres", "-X", "stream", "-R", "--no-sync"])
    return _start_postgres("standby", directory, free_port(),
                           {"hot_standby": "on",
                            "recovery_min_apply_delay": f"{apply_delay_ms}ms"})


def start_cluster(masters: int = 3) -> list[Server]:
    """A Redis Cluster of ``masters`` masters on loopback (no replicas), every slot
    covered; the first server's ``url`` is where a cluster client starts."""
    servers: list[Server] = []
    try:
        for _ in range(masters):
            servers.append(start_redis(  # the bus on a free port too (else: port + 10000)
                "--cluster-enabled", "yes", "--cluster-port", str(free_port()),
                "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"))
        nodes = [server.url.removeprefix("redis://").split("/")[0] for server in servers]
        done = subprocess.run([shutil.which("redis-cli") or "redis-cli", "--cluster",
                               "create", *nodes, "--cluster-yes"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{done.stdout}"
                               f"\n{done.stderr}")
        deadline = time.monotonic() + START_TIMEOUT_S * 3
        for server in servers:
            client = redis.Redis.from_url(server.url, decode_responses=True)
            try:
                while client.cluster("INFO").get("cluster_state") != "ok":
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the cluster never became ok at {server.url}")
                    time.sleep(0.05)
            finally:
                client.close()
        return servers
    except BaseException:
        for server in servers:
            server.stop()
        raise
