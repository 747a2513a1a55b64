"""All conversion between protobuf messages (transport.v1) and the grpc-free value objects in transport.wire.

Vectors travel as packed little-endian uint64 bytes (8 bytes per cell), never as repeated fields.
"""

from __future__ import annotations

import dataclasses
import typing
from fractions import Fraction
from typing import Any

import numpy as np

from cleanroom.errors import InvalidInput
from transport import wire
from transport.v1 import party_pb2 as pb

_U64 = np.dtype("<u8")


def pack_vector(vector: np.ndarray) -> bytes:
    """int64/uint64 vector -> little-endian uint64 bytes (two's complement, i.e. mod 2^64)."""
    return np.ascontiguousarray(vector).astype(np.int64, copy=False).view(np.uint64).astype(_U64).tobytes()


def unpack_vector(data: bytes, length: int, what: str) -> np.ndarray:
    """Little-endian bytes -> uint64 vector; refuses a length that does not match the declared cell count."""
    if len(data) != 8 * length:
        raise InvalidInput(f"{what}: {len(data)} bytes do not hold {length} uint64 cells")
    return np.frombuffer(data, dtype=_U64).astype(np.uint64)


def hello_to_pb(m: wire.Hello) -> pb.HelloRequest:
    return pb.HelloRequest(
        job_id=m.job_id,
        plan_hash=m.plan_hash,
        schema_hash=m.schema_hash,
        coordinator_id=m.coordinator_id,
        software_version=m.software_version,
    )


def hello_from_pb(p: pb.HelloRequest) -> wire.Hello:
    return wire.Hello(p.job_id, p.plan_hash, p.schema_hash, p.coordinator_id, p.software_version)


def hello_reply_to_pb(m: wire.HelloReply) -> pb.HelloResponse:
    return pb.HelloResponse(
        party_id=m.party_id,
        approved=m.approved,
        schema_hash=m.schema_hash,
        software_version=m.software_version,
        remaining_rho=m.remaining_rho,
        next_round=m.next_round,
        plan_remaining_rho=m.plan_remaining_rho,
    )


def hello_reply_from_pb(p: pb.HelloResponse) -> wire.HelloReply:
    return wire.HelloReply(
        p.party_id,
        p.approved,
        p.schema_hash,
        p.software_version,
        p.remaining_rho,
        p.next_round,
        p.plan_remaining_rho,
    )


def round_to_pb(m: wire.RoundRequest) -> pb.RoundSpec:
    return pb.RoundSpec(
        job_id=m.job_id,
        release_id=m.release_id,
        round=m.round,
        cliques=[pb.Clique(attrs=list(c)) for c in m.cliques],
        sigma_party2_numerator=m.sigma_party2.numerator,
        sigma_party2_denominator=m.sigma_party2.denominator,
        statistic=m.statistic,
        length=m.length,
    )


def round_from_pb(p: pb.RoundSpec) -> wire.RoundRequest:
    if p.sigma_party2_denominator == 0:
        raise InvalidInput(f"round {p.round}: sigma_party2 denominator is 0")
    return wire.RoundRequest(
        job_id=p.job_id,
        release_id=p.release_id,
        round=p.round,
        cliques=tuple(tuple(c.attrs) for c in p.cliques),
        sigma_party2=Fraction(p.sigma_party2_numerator, p.sigma_party2_denominator),
        statistic=p.statistic,
        length=p.length,
    )


# ---- secure-aggregation messages: cleanroom.secagg.messages <-> transport.v1, field by field ------------

_HEADER = ("sid", "stage", "sender")


def _pairs() -> dict[type, Any]:
    from cleanroom.secagg import messages as sa

    return {
        sa.AdvertiseKeysRequest: pb.AdvertiseKeysRequest,
        sa.AdvertiseKeys: pb.AdvertiseKeys,
        sa.ShareKeysRequest: pb.ShareKeysRequest,
        sa.EncryptedShares: pb.EncryptedShares,
        sa.ShareKeys: pb.ShareKeys,
        sa.MaskedInputRequest: pb.MaskedInputRequest,
        sa.MaskedInput: pb.MaskedInput,
        sa.ConsistencyCheckRequest: pb.ConsistencyCheckRequest,
        sa.ConsistencySignature: pb.ConsistencySignature,
        sa.UnmaskRequest: pb.UnmaskRequest,
        sa.RevealedShare: pb.RevealedShare,
        sa.UnmaskResponse: pb.UnmaskResponse,
    }


def _has_header(cls: type) -> bool:
    """Stage messages carry (sid, stage, sender) in a StageHeader; nested records do not."""
    return any(f.name == "sid" for f in dataclasses.fields(cls))


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def stage_to_pb(message: Any) -> Any:
    """A secagg dataclass -> its protobuf message (header fields go into `header`)."""
    pb_cls = _pairs()[type(message)]
    kwargs: dict[str, Any] = {}
    headed = _has_header(type(message))
    for f in dataclasses.fields(message):
        value = getattr(message, f.name)
        if headed and f.name in _HEADER:
            continue
        if isinstance(value, tuple):
            value = [stage_to_pb(v) if dataclasses.is_dataclass(v) else v for v in value]
        kwargs[f.name] = value
    if headed:
        kwargs["header"] = pb.StageHeader(sid=message.sid, stage=message.stage, sender=message.sender)
    return pb_cls(**kwargs)


def stage_from_pb(p: Any, cls: type | None = None) -> Any:
    """A protobuf message -> its secagg dataclass (which validates itself); `cls` defaults by message type."""
    if cls is None:
        cls = next(c for c, pb_cls in _pairs().items() if isinstance(p, pb_cls))
    kwargs: dict[str, Any] = {}
    hints = _field_types(cls)
    headed = _has_header(cls)
    for f in dataclasses.fields(cls):
        if headed and f.name in _HEADER:
            kwargs[f.name] = getattr(p.header, f.name)
            continue
        value = getattr(p, f.name)
        inner = typing.get_args(hints[f.name])
        if inner and dataclasses.is_dataclass(inner[0]):
            value = tuple(stage_from_pb(v, inner[0]) for v in value)  # type: ignore[arg-type]
        elif inner:
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def advertise_request_to_pb(spec: wire.RoundRequest, request: Any) -> pb.AdvertiseKeysRequest:
    message = stage_to_pb(request)
    message.spec.CopyFrom(round_to_pb(spec))
    return message  # type: ignore[no-any-return]


def advertise_request_from_pb(p: pb.AdvertiseKeysRequest) -> tuple[wire.RoundRequest, Any]:
    return round_from_pb(p.spec), stage_from_pb(p)


def result_header_to_pb(job_id: str, files: list[wire.ResultFile]) -> pb.ResultChunk:
    return pb.ResultChunk(
        header=pb.ResultHeader(
            job_id=job_id, files=[pb.ResultFile(name=f.name, size=f.size, sha256=f.sha256) for f in files]
        )
    )


def result_header_from_pb(p: pb.ResultChunk) -> tuple[str, list[wire.ResultFile]]:
    if p.WhichOneof("part") != "header":
        raise InvalidInput("DeliverResults: the first message must be the header")
    return p.header.job_id, [wire.ResultFile(f.name, f.size, f.sha256) for f in p.header.files]


def chunk_to_pb(name: str, offset: int, data: bytes) -> pb.ResultChunk:
    return pb.ResultChunk(chunk=pb.FileChunk(name=name, offset=offset, data=data))


def chunk_from_pb(p: pb.ResultChunk) -> tuple[str, int, bytes]:
    if p.WhichOneof("part") != "chunk":
        raise InvalidInput("DeliverResults: only one header is allowed, then chunks")
    return p.chunk.name, p.chunk.offset, p.chunk.data


def budget_to_pb(m: wire.BudgetStatus) -> pb.BudgetResponse:
    return pb.BudgetResponse(
        total_rho=m.total_rho,
        spent_rho=m.spent_rho,
        remaining_rho=m.remaining_rho,
        bytes_uploaded=m.bytes_uploaded,
    )


def budget_from_pb(p: pb.BudgetResponse) -> wire.BudgetStatus:
    return wire.BudgetStatus(p.total_rho, p.spent_rho, p.remaining_rho, p.bytes_uploaded)
