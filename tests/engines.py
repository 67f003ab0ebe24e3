"""Real servers that the tests start for themselves, on loopback, and stop by pid.

A newcomer with ``redis-server`` installed runs the real-Redis tests without configuring
anything: when ``REDIS_URL`` is not set, the root conftest.py starts a throwaway Redis here
(a free port, its files in a temporary directory, nothing saved to disk) and sets
``REDIS_URL`` for the whole session, pytest-xdist's workers included. A server that dies
during the run keeps its directory, and the path of its log is printed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis

START_TIMEOUT_S = 10.0


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


def start_redis() -> Server:
    """A throwaway redis-server on 127.0.0.1, answering PING; raise if it does not."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
    directory, port = Path(tempfile.mkdtemp(prefix="tests-redis-")), free_port()
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--dir", str(directory),
         "--logfile", str(directory / "redis.log")],
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
