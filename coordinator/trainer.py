"""The model is trained and exported in a worker process the coordinator starts with the job.

scikit-learn, SciPy and ONNX take one to two seconds of CPU to import, and training holds the interpreter. In
a worker process (started at the beginning of the job, importing them while the handshake, the rounds and
the fit run on the coordinator's own thread) they use another core instead of the coordinator's critical
path. The worker is the coordinator's own child (same trust domain, same user): it receives the encoded
training matrix, labels and model spec and returns the ONNX bytes, which the coordinator writes as before.
`model_export.train_and_export` is the same function either way (tests compare the bytes).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import numpy as np

WORKER_MODULES = (
    "sklearn.ensemble",
    "threadpoolctl",
    "onnx",
    "onnxruntime",
    "cleanroom.evaluation.model_export",
)


def _warm_up(parent: int) -> None:
    """In the worker: follow the coordinator's life, then import what training and export need."""
    import importlib

    threading.Thread(target=_exit_with, args=(parent,), daemon=True, name="parent-watch").start()
    for name in WORKER_MODULES:
        importlib.import_module(name)


def _exit_with(parent: int, every_s: float = 1.0) -> None:
    """End the worker when the coordinator is gone. A killed coordinator never closes the pool's queue
    (the worker holds both ends of its pipe), so without this the worker would wait on it forever."""
    while os.getppid() == parent:
        time.sleep(every_s)
    os._exit(0)


def _train(x: np.ndarray, y: Any, spec: Any, seed: int | None, threads: int, check_rows: np.ndarray) -> Any:
    from cleanroom.evaluation.model_export import train_and_export

    return train_and_export(x, y, spec, seed, threads, check_rows)


class Trainer:
    """One worker process that trains and exports the job's model; `close()` ends it."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing of the job inherited
        self._pool = ProcessPoolExecutor(
            max_workers=1, mp_context=context, initializer=_warm_up, initargs=(os.getpid(),)
        )
        self._pool.submit(int)  # start the worker now: its imports run while the job goes on

    def train(
        self, x: np.ndarray, y: Any, spec: Any, seed: int | None, threads: int, check_rows: np.ndarray
    ) -> tuple[bytes, Any]:
        """(ONNX bytes, spec with class labels), computed in the worker."""
        future: Future[tuple[bytes, Any]] = self._pool.submit(_train, x, y, spec, seed, threads, check_rows)
        return future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
