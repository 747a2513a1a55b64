"""The coordinator's model worker process gives the very bytes of in-process training and export."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from cleanroom.evaluation import model_export
from cleanroom.sample_data import demo_dataset
from cleanroom.schema import Schema
from coordinator.results import training_data
from coordinator.trainer import Trainer


def test_worker_process_and_in_process_give_identical_model_bytes() -> None:
    schema_dict, frame, target, task = demo_dataset(3000, seed=3)
    x, y, spec = training_data(frame, target, task, Schema.from_dict(schema_dict))
    local, local_spec = model_export.train_and_export(x, y, spec, 7, 1, x[:500])
    trainer = Trainer()
    try:
        remote, remote_spec = trainer.train(x, y, spec, 7, 1, x[:500])
        fewer_rows, _ = trainer.train(x[:-300], y.iloc[:-300], spec, 7, 1, x[:500])
    finally:
        trainer.close()
    assert remote == local and remote_spec == local_spec
    assert fewer_rows != local  # the worker trains on what it is sent (so the equality above can fail)
    assert len(local_spec.classes) == 2 and np.isfinite(x).any()


def test_the_worker_ends_when_a_killed_coordinator_cannot_close_it(tmp_path: Path) -> None:
    """A coordinator killed with SIGKILL never shuts its pool down; its worker must not outlive it."""
    script = (
        "import os, sys, time\n"
        "from coordinator.trainer import Trainer\n"
        "trainer = Trainer()\n"
        "worker = next(iter(trainer._pool._processes.values())) if trainer._pool._processes else None\n"
        "while worker is None or not worker.is_alive():\n"
        "    time.sleep(0.05)\n"
        "    worker = next(iter(trainer._pool._processes.values()), None)\n"
        f"open({str(tmp_path / 'worker.pid')!r}, 'w').write(str(worker.pid))\n"
        "time.sleep(600)\n"
    )
    coordinator = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1])
    pid_file = tmp_path / "worker.pid"
    while not pid_file.is_file() or not pid_file.read_text():
        assert coordinator.poll() is None, "the stand-in coordinator exited before starting its worker"
        time.sleep(0.05)
    worker = int(pid_file.read_text())
    coordinator.send_signal(signal.SIGKILL)
    coordinator.wait()
    for _ in range(1200):  # liveness, not speed: the watch polls once a second
        if not _alive(worker):
            return
        time.sleep(0.05)
    os.kill(worker, signal.SIGKILL)
    raise AssertionError(f"worker {worker} outlived its killed coordinator by a minute")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
