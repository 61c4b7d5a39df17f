"""The real relay for the tests: the built `tally-relay` on a free loopback port with a fresh data
directory, staff added by its CLI, a service key, and a token secret shared with Django."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SECRET = "tests-token-secret-of-at-least-32-bytes!"


def relay_binary() -> Path:
    given = os.environ.get("TALLY_RELAY_BIN")
    if given:
        return Path(given)
    built = [ROOT / "target" / p / "tally-relay" for p in ("release", "debug")]
    built = [b for b in built if b.exists()]
    if built:
        return max(built, key=lambda b: b.stat().st_mtime)  # the newer build
    raise RuntimeError("build the relay first (cargo build -p tally-relay), or set TALLY_RELAY_BIN")


class Relay:
    """One relay process, stoppable and restartable on the same port and data."""

    def __init__(self, staff: tuple[str, ...] = ("alice", "bob", "carol"), args: tuple[str, ...] = ()) -> None:
        self.bin = relay_binary()
        self.data = Path(tempfile.mkdtemp(prefix="tally-py-"))
        self.static = self.data / "static"
        self.static.mkdir()
        dist = ROOT / "dist"
        if (dist / "tally-frontend.js").exists():
            self.static = dist
        self.args = args
        self.port = 0
        self.url = ""
        self.process: subprocess.Popen[str] | None = None
        for s in staff:
            self.cli("staff", "add", s, "--name", s.capitalize())
        self.key = self.cli("service-key", "create", "work-app")

    def cli(self, *args: str) -> str:
        env = {**os.environ, "TALLY_SECRET": SECRET}
        out = subprocess.run(
            [str(self.bin), "--data", str(self.data), *args], env=env, check=True, capture_output=True, text=True
        )
        return out.stdout.strip()

    def start(self) -> Relay:
        env = {**os.environ, "TALLY_SECRET": SECRET, "RUST_LOG": "error"}
        self.process = subprocess.Popen(
            [
                str(self.bin),
                "--data",
                str(self.data),
                "serve",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--static",
                str(self.static),
                *self.args,
            ],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the relay exited with {self.process.wait()}")
        self.url = line.strip().split(" ")[-1]
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture
def relay() -> Iterator[Relay]:
    r = Relay().start()
    yield r
    r.close()


@pytest.fixture
def tally_settings(settings, relay):  # type: ignore[no-untyped-def]
    """Django settings pointing at the test's relay."""
    settings.TALLY_URL = relay.url
    settings.TALLY_SERVICE_KEY = relay.key
    settings.TALLY_SECRET = SECRET
    return settings
