"""Result files move in chunks: hashed once for all parties, streamed from disk, written and hashed as they
arrive, and a release is compared with the digests recorded at staging (no file is read whole or twice)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import pytest

from cleanroom.errors import InvalidInput, PermissionDenied
from coordinator.client import file_metas, result_stream
from party import evaluation as party_evaluation
from party.evaluation import PartyEvaluation
from party.node import ResultWriter
from transport import serde, wire
from transport.options import CHUNK_BYTES


def _big_file(path: Path, chunks: int = 12) -> bytes:
    data = os.urandom(CHUNK_BYTES * chunks + 123)
    path.write_bytes(data)
    return data


def test_file_metas_hash_in_chunks(tmp_path: Path) -> None:
    data = _big_file(tmp_path / "synthetic.csv")
    (tmp_path / "report.json").write_bytes(b"{}")
    tracemalloc.start()
    try:
        metas = file_metas(
            {"synthetic.csv": tmp_path / "synthetic.csv", "report.json": tmp_path / "report.json"}
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert metas["synthetic.csv"] == wire.ResultFile(
        "synthetic.csv", len(data), hashlib.sha256(data).hexdigest()
    )
    assert metas["report.json"].sha256 == hashlib.sha256(b"{}").hexdigest()
    assert peak < 3 * CHUNK_BYTES, peak  # one chunk at a time, not the 12 MiB file


def test_stream_then_writer_reproduce_the_file_exactly(tmp_path: Path) -> None:
    data = _big_file(tmp_path / "synthetic.csv")
    files = {"synthetic.csv": tmp_path / "synthetic.csv"}
    metas = list(file_metas(files).values())

    async def collect() -> list[object]:
        return [message async for message in result_stream("job-1", files, metas)]

    messages = asyncio.run(collect())
    job_id, announced = serde.result_header_from_pb(messages[0])  # type: ignore[arg-type]
    assert job_id == "job-1" and announced == metas
    writer = ResultWriter(tmp_path / "out", {m.name: m for m in announced})
    for message in messages[1:]:
        name, offset, chunk = serde.chunk_from_pb(message)  # type: ignore[arg-type]
        assert len(chunk) <= CHUNK_BYTES
        writer.write(name, offset, chunk)
    assert writer.finish() == ["synthetic.csv"]
    assert all(handle.closed for handle in writer.handles.values())
    assert (tmp_path / "out" / "synthetic.csv").read_bytes() == data
    assert writer.sha256("synthetic.csv") == metas[0].sha256


def test_a_failed_upload_closes_its_files(tmp_path: Path) -> None:
    meta = wire.ResultFile("report.json", 2, hashlib.sha256(b"{}").hexdigest())
    writer = ResultWriter(tmp_path / "out", {"report.json": meta})
    writer.write("report.json", 0, b"{")
    writer.close()
    assert all(handle.closed for handle in writer.handles.values())


def test_delivery_is_checked_against_the_digests_recorded_at_staging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluation = PartyEvaluation("p1", SimpleNamespace(target=None), None, None, tmp_path / "staged", b"")
    staged = evaluation.staged_dir("job") / "synthetic.csv"
    staged.parent.mkdir(parents=True)
    data = _big_file(staged, chunks=2)
    meta = wire.ResultFile("synthetic.csv", len(data), hashlib.sha256(data).hexdigest())
    evaluation.check_staged("job", {"synthetic.csv": meta.sha256})

    def no_reading(path: Path, chunk_bytes: int = 0) -> str:
        raise AssertionError(f"{path} was read again")

    monkeypatch.setattr(party_evaluation, "_sha256", no_reading)
    evaluation.check_delivery("job", [meta])
    with pytest.raises(PermissionDenied, match="differs from the copy staged"):
        evaluation.check_delivery("job", [wire.ResultFile("synthetic.csv", meta.size, "00" * 32)])
    staged.unlink()
    with pytest.raises(PermissionDenied, match="differs from the copy staged"):
        evaluation.check_delivery("job", [meta])  # the staged copy is gone: nothing to compare with


def test_a_writer_adopts_a_local_copy_and_checks_it_like_an_upload(tmp_path: Path) -> None:
    data = _big_file(tmp_path / "staged.csv", chunks=2)
    meta = wire.ResultFile("synthetic.csv", len(data), hashlib.sha256(data).hexdigest())
    writer = ResultWriter(tmp_path / "out", {"synthetic.csv": meta})
    writer.adopt("synthetic.csv", tmp_path / "staged.csv")
    assert writer.finish() == ["synthetic.csv"]
    assert (tmp_path / "out" / "synthetic.csv").read_bytes() == data
    (tmp_path / "other.csv").write_bytes(data[:-1] + b"!")  # same size, other bytes
    wrong = ResultWriter(tmp_path / "out2", {"synthetic.csv": meta})
    wrong.adopt("synthetic.csv", tmp_path / "other.csv")
    with pytest.raises(InvalidInput, match="incomplete or corrupted"):
        wrong.finish()


def test_only_the_evaluated_copy_is_offered_for_adoption(tmp_path: Path) -> None:
    evaluation = PartyEvaluation("p1", SimpleNamespace(target=None), None, None, tmp_path / "staged", b"")
    staged = evaluation.staged_dir("job") / "synthetic.csv"
    staged.parent.mkdir(parents=True)
    staged.write_bytes(b"a,b\n1,2\n")
    meta = wire.ResultFile("synthetic.csv", 8, hashlib.sha256(b"a,b\n1,2\n").hexdigest())
    assert evaluation.staged_copy("job", meta) is None  # no digest recorded at staging: nothing adopted
    evaluation.check_staged("job", {"synthetic.csv": meta.sha256})
    assert evaluation.staged_copy("job", meta) == staged
    assert evaluation.staged_copy("job", wire.ResultFile("synthetic.csv", 8, "00" * 32)) is None
    assert evaluation.staged_copy("other-job", meta) is None


def test_delivery_falls_back_to_sending_every_file(tmp_path: Path) -> None:
    """If a party refuses a delivery that relied on its staged copy (the copy is gone), everything is sent."""
    from cleanroom.errors import InvalidInput as Refused
    from coordinator.workflow import JobRecord, Workflow

    calls: list[frozenset[str]] = []

    class Client:
        async def deliver(
            self, job_id: str, files: object, metas: object, held: frozenset[str] = frozenset()
        ):  # type: ignore[no-untyped-def]
            calls.append(held)
            if held:
                raise Refused("DeliverResults: synthetic.csv arrived incomplete or corrupted")
            return ["synthetic.csv"]

    workflow = Workflow.__new__(Workflow)
    workflow.clients = {"p1": Client()}  # type: ignore[dict-item]
    workflow.record = JobRecord("job")
    workflow.staged = {"p1": {"synthetic.csv": "ab" * 32}}
    metas = {"synthetic.csv": wire.ResultFile("synthetic.csv", 3, "ab" * 32)}
    written = asyncio.run(workflow.deliver_to("p1", {"synthetic.csv": tmp_path / "s.csv"}, metas))
    assert written == ["synthetic.csv"] and calls == [frozenset({"synthetic.csv"}), frozenset()]
