"""Real `pathway` processes for tests: dispatchers (`pathway run --webhook`), servers (`pathway
serve`), and polling with a deadline (never a sleep standing in for an event).

    with reaped([]) as processes:
        processes.append(Server("app", db_url, folder, "--workers", "2", "--no-scheduler"))
        processes.append(Dispatcher("d1", db_url, sink.url, folder, now=None))
        wait_until(lambda: ..., 60, "what we wait for", processes)
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import pytest

PATHWAY = str(Path(sys.executable).parent / "pathway")
#: The delivery tests pin the dispatchers' clock here (PATHWAY_NOW): every reminder is due, late.
NOW = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
SWEEP = "0.2"


class Process:
    """A `pathway` subprocess, its stderr in a file of the test's folder."""

    def __init__(self, name: str, args: Sequence[str], folder: Path, env: dict[str, str]):
        self.name = name
        self.log = folder / f"{name}.stderr"
        self._err: IO[bytes] = open(self.log, "wb")  # noqa: SIM115 (closed by reap)
        self.proc = subprocess.Popen([PATHWAY, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self._err, env=env, start_new_session=True)
        self.pid = self.proc.pid

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def poll(self) -> int | None:
        return self.proc.poll()

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, then its exit status (it must stop by itself within `timeout`)."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def reap(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)  # its worker processes too
        self.proc.wait(timeout=30)
        self._err.close()

    def __repr__(self) -> str:
        return f"{self.name} (pid {self.pid})"


def _env(db_url: str, now: datetime | None) -> dict[str, str]:
    env = dict(os.environ, PATHWAY_DB=db_url)
    env.pop("PATHWAY_POLICY", None)
    env.pop("PATHWAY_NOW", None)
    if now is not None:
        env["PATHWAY_NOW"] = now.isoformat()
    return env


class Dispatcher(Process):
    """`pathway run --webhook URL --sweep 0.2` (clock pinned at NOW unless `now=None`)."""

    def __init__(self, name: str, db_url: str, webhook: str, folder: Path, *extra: str,
                 now: datetime | None = NOW):
        super().__init__(name, ["run", "--webhook", webhook, "--sweep", SWEEP, *extra], folder, _env(db_url, now))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server(Process):
    """`pathway serve --port P ...` on a free port; `wait_ready()` before use."""

    def __init__(self, name: str, db_url: str, folder: Path, *extra: str, now: datetime | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(name, ["serve", "--port", str(self.port), *extra], folder, _env(db_url, now))

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/login", timeout=5) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 60) -> None:
        wait_until(self.answers, timeout, f"{self} to answer", [self], every=0.05)

    def workers(self) -> list[int]:
        """The pids of its worker processes (`--workers N`: the supervisor's children spawned by
        multiprocessing, its resource tracker aside)."""
        found = []
        for pid in children(self.pid):
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in command:
                found.append(pid)
        return found

    def connections(self, pid: int | None = None) -> int:
        """Established TCP connections to the server's port held by `pid` (default: the server)."""
        inodes = set()
        for fd in os.listdir(f"/proc/{pid or self.pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid or self.pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        count = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError), open(table) as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    local_port = int(fields[1].rsplit(":", 1)[1], 16)
                    if local_port == self.port and fields[3] == "01" and fields[9] in inodes:
                        count += 1
        return count

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))


def children(pid: int) -> list[int]:
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
        except OSError:
            continue
        found += [int(p) for p in text.split()]
    return found


@contextmanager
def reaped(processes: list[Process]) -> Iterator[list[Process]]:
    """Whatever happens, every process started in the block is killed and waited for."""
    try:
        yield processes
    finally:
        for process in processes:
            process.reap()


def wait_until(condition: Callable[[], bool], timeout: float, what: str, watch: Sequence[Process] = (),
               every: float = 0.01) -> float:
    """Poll `condition` until true; fail at the deadline, or as soon as a watched process exits.
    Returns the seconds it took."""
    start = time.monotonic()
    while not condition():
        for process in watch:
            if process.poll() is not None:
                pytest.fail(f"{process} exited with {process.poll()} while waiting for {what}:\n{process.stderr()}")
        if time.monotonic() - start > timeout:
            logs = "\n".join(f"--- {p}:\n{p.stderr()[-3000:]}" for p in watch)
            pytest.fail(f"waited {timeout} s for {what} in vain\n{logs}")
        time.sleep(every)
    return time.monotonic() - start
