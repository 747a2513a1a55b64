"""The coordinator's model worker process gives the very bytes of in-process training and export."""

from __future__ import annotations

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
