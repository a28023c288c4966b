"""A throwaway PostgreSQL server of the test's own (initdb + pg_ctl in a temporary folder), for
tests that stop and restart the database under load — never the shared server.

    with PgCluster.create() as pg:       # or the fixture `own_pg` (tests/conftest.py)
        url = pg.url                     # postgresql://postgres@127.0.0.1:PORT/postgres
        pg.restart()                     # pg_ctl restart -m fast: every connection is cut
        pg.stop(); pg.start()

The server binaries are looked up with `pg_config --bindir`, then in /usr/lib/postgresql/*/bin;
`PgCluster.binaries()` is None where there are none (the tests then skip, saying so). Run as
root, the server runs as the `postgres` user (initdb refuses root), through `runuser`.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    def __init__(self, bindir: Path, folder: Path, port: int, user: str | None):
        self.bindir, self.folder, self.port, self.user = bindir, folder, port, user
        self.data = folder / "data"
        self.log = folder / "server.log"
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    @staticmethod
    def binaries() -> Path | None:
        """The folder of initdb and pg_ctl, or None."""
        candidates: list[str] = []
        if shutil.which("pg_config"):
            out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
            candidates.append(out.stdout.strip())
        candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
        for folder in candidates:
            if folder and (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
                return Path(folder)
        return None

    @classmethod
    def create(cls) -> PgCluster:
        bindir = cls.binaries()
        if bindir is None:
            raise RuntimeError("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
        user = None
        folder = Path(tempfile.mkdtemp(prefix="pathway-pg-"))
        if os.geteuid() == 0:  # initdb refuses root: the server runs as `postgres`
            user = "postgres"
            entry = pwd.getpwnam(user)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
            folder.chmod(0o700)
        cluster = cls(bindir, folder, _free_port(), user)
        cluster._run("initdb", "-D", str(cluster.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                     "--no-sync", "--locale=C")
        cluster.start()
        return cluster

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / tool), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=120,
                              cwd=str(self.folder))

    def _options(self) -> str:
        # loopback only, sockets in the folder; durability off: these databases live for one test
        return (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", self._options(), "-w", "-t", "60",
                  "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop", check=False)

    def restart(self) -> None:
        """Stop (fast: every session is cut) and start again."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", self._options(), "-m", "fast", "-w",
                  "-t", "60", "restart")

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.destroy()
