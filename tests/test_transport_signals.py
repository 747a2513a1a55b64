"""SIGTERM on a real server process: it stops gracefully and exits 0 (health goes NOT_SERVING first)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from transport.ca import init_ca, issue
from transport.channel import check_health, secure_channel
from transport.tls import TlsFiles

REPO = Path(__file__).resolve().parents[1]
SERVER = """
import asyncio, sys
from pathlib import Path
from transport.server import install_signal_handlers, start_server
from transport.tls import TlsFiles

async def main():
    d = Path(sys.argv[1])
    tls = TlsFiles(d / "ca.pem", d / "n.pem", d / "n.key")
    node = await start_server("127.0.0.1:0", tls, lambda s: None, ("x",))
    install_signal_handlers(node, grace=2.0)
    print(node.port, flush=True)
    await node.wait()
    print("stopped", flush=True)

asyncio.run(main())
"""


def test_sigterm_stops_the_server_cleanly(tmp_path: Path) -> None:
    init_ca(tmp_path)
    issue(tmp_path, "n")
    issue(tmp_path, "coordinator", role="coordinator")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(tmp_path)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        tls = TlsFiles(tmp_path / "ca.pem", tmp_path / "coordinator.pem", tmp_path / "coordinator.key")

        async def health() -> str:
            async with secure_channel(f"127.0.0.1:{port}", tls, "n") as channel:
                return await check_health(channel, "x")

        assert asyncio.run(health()) == "SERVING"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert proc.stdout.read().strip() == "stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
