"""Party processes for `cleanroom demo`/`simulate`, forked from one process that has imported their libraries.

Every party node is still its own OS process with its own keys, ledger, audit log and gRPC server, running
`cleanroom party serve` exactly as a real deployment does. Only the start differs: a multiprocessing
forkserver imports numpy, pandas, pyarrow, DuckDB, cryptography, ONNX Runtime and the party's modules once
(PRELOAD; never gRPC, whose core must not be initialised before a fork), and each party is a fork of it.
Fifty parties no longer import ~1 s of libraries each on a shared machine, and the library pages are shared
copy-on-write (per-process RSS still counts them; proportional set size does not).

The forkserver holds no data, key or secret: it is started from a clean interpreter (not forked from the
runner, which holds every party's data in a demo) and only imports modules. `LocalJob.profile_dir` and
`CLEANROOM_LOCAL_LAUNCH=exec` start parties with exec instead (cProfile needs its own interpreter).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

PRELOAD = (
    "numpy",
    "pandas",
    "pyarrow",
    "duckdb",
    "onnx",
    "onnxruntime",
    "cryptography.x509",
    "cryptography.hazmat.primitives.asymmetric.x25519",
    "cleanroom.encoding",
    "cleanroom.marginals",
    "cleanroom.noise",
    "cleanroom.plan",
    "cleanroom.ledger",
    "cleanroom.audit",
    "cleanroom.secagg.party",
    "cleanroom.secagg.reveal",
    "cleanroom.evaluation.model_file",
    "cleanroom.evaluation.release",
    "cleanroom.evaluation.report",
    "party.node",
    "party.evaluation",
    "party.integrity",
    "party.governance",
    "party.sources.duck",
    "cleanroom_cli.main",
    "cleanroom_cli._freeze",  # last: gc.freeze() of everything above
)
_context: Any = None


def forkserver() -> Any:
    """The multiprocessing context whose forkserver preloads PRELOAD (started at the first call)."""
    global _context
    if _context is None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(PRELOAD))
        from multiprocessing import forkserver as fs

        fs.ensure_running()  # the imports start now, while the caller writes certificates and data
        _context = context
    return _context


def _serve(argv: list[str], log_path: str, work: str, environment: dict[str, str]) -> None:
    """In the forked child: the launcher's environment as of now (not the forkserver's, from its start),
    output to the party's log, then `cleanroom party serve` (its exit status)."""
    os.environ.clear()
    os.environ.update(environment)
    os.setsid()  # its own session, as an exec'd party: a Ctrl-C at the terminal reaches only the launcher
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.chdir(work)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    from cleanroom_cli.main import main

    status = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(status)


class ForkedParty:
    """A forked party process with the part of `subprocess.Popen`'s interface the local runner uses."""

    def __init__(self, argv: list[str], log_path: Path, work: Path) -> None:
        arguments = (argv, str(log_path), str(work), dict(os.environ))
        self._process = forkserver().Process(target=_serve, args=arguments, daemon=False)
        self._process.start()

    @property
    def pid(self) -> int:
        return int(self._process.pid)

    @property
    def returncode(self) -> int | None:
        code = self._process.exitcode
        return None if code is None else int(code)

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(f"party process {self.pid}", timeout or 0.0)
        return int(self._process.exitcode)

    def usage(self) -> tuple[float, float, float] | None:
        """(CPU seconds, peak RSS MiB, current PSS MiB) from /proc; None once the process is gone."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{self.pid}/status").read_text()
            rollup = Path(f"/proc/{self.pid}/smaps_rollup").read_text()
        except OSError:
            return None
        cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        return cpu, _kib(status, "VmHWM:") / 1024, _kib(rollup, "Pss:") / 1024


def _kib(text: str, key: str) -> int:
    return next((int(line.split()[1]) for line in text.splitlines() if line.startswith(key)), 0)
