"""The README's quick start and embedding example run as written (style rule 9)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def block(after_heading: str, language: str) -> str:
    text = README.read_text()
    section = text[text.index(after_heading):]
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match, f"no {language} block after {after_heading}"
    return match.group(1)


def test_the_readme_names_exactly_the_two_set_up_commands() -> None:
    commands = [line.split()[0] for line in block("## Set up", "bash").splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert commands == ["scripts/serve", "scripts/test"]
    for command in commands:
        assert os.access(README.parent / command, os.X_OK), command


def test_the_quick_start_runs_as_written(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               PATHWAY_DB=f"sqlite:///{tmp_path / 'quick.db'}", PATHWAY_NOW="2026-02-01T09:00:00+00:00",
               COLUMNS="200")
    proc = subprocess.run(["bash", "-c", block("## Quick start", "bash")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert "line 5: P1 cycle_given refused" in out and "CYCLE_TOO_EARLY (confirm)" in out
    assert out.count('"status": "duplicate"') == 4
    assert proc.stderr.count("1 event: 1 accepted") == 2  # the override, then the late RAS result
    assert "state neoadjuvant_chemo" in out and "chemo_cycle" in out
    assert "2026-02-09" in out  # cycle 3 is due 14 days after cycle 2, on the worklist
    assert proc.returncode == 0, proc.stderr


def test_the_embedding_example_runs_as_written(tmp_path: Path) -> None:
    env = dict(os.environ, PATHWAY_NOW="2026-01-10T09:00:00+00:00")
    proc = subprocess.run([sys.executable, "-c", block("### Embedding", "python")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("accepted referral ()")
    assert "mdt_due" in proc.stdout and "2026, 1, 19" in proc.stdout
    assert proc.stdout.rstrip().endswith("accepted")


def test_the_delivery_example_runs_as_written(tmp_path: Path) -> None:
    """After the embedding example, the delivery example sends the MDT meeting's reminder (notify_at
    08:00 on 10 January, two days before the meeting) an hour late."""
    env = dict(os.environ, PATHWAY_NOW="2026-01-10T09:00:00+00:00")
    for heading in ("### Embedding", "### Reminder delivery"):
        proc = subprocess.run([sys.executable, "-c", block(heading, "python")], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert '"key":"P2:mdt_meeting:2"' in lines[0] and '"due_on":"2026-01-12"' in lines[0]
    assert '"late_by_s":3600' in lines[0]
    assert lines[1] == "1 sent, 1 late, 0 failed"


def test_scripts_serve_loads_the_demo_prints_the_account_and_serves_behind_a_login(tmp_path: Path) -> None:
    """The README's main command, as a newcomer runs it (on a new SQLite database)."""
    import http.client
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PATHWAY_DB=f"sqlite:///{tmp_path / 'serve.db'}")
    proc = subprocess.Popen([str(README.parent / "scripts" / "serve"), "--port", str(port), "--no-scheduler"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen: list[str] = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not any("password" in line for line in seen):
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            seen.append(line)
        assert any("demo account:  name coordinator   password " in line for line in seen), "".join(seen)
        status = None
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/")
                response = conn.getresponse()
                status, location = response.status, response.getheader("Location")
                conn.close()
                break
            except OSError:
                time.sleep(0.2)
        assert status == 303 and location is not None and location.startswith("/login")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()  # type: ignore[union-attr]
