"""Conversion between the vertical protocol's dataclasses (`cleanroom.vertical.messages`) and transport.v1
`vertical.proto` messages. Big payloads (encrypted lists, aggregates) travel as streams of chunks: a first
message with `meta`, then `data` chunks of at most CHUNK bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from fractions import Fraction
from typing import Any

from cleanroom.errors import InvalidInput
from cleanroom.vertical.messages import (
    AggregateReply,
    BlindReply,
    EncryptedList,
    SetupReply,
    VerticalRoundRequest,
)
from transport.v1 import party_pb2 as party_pb
from transport.v1 import vertical_pb2 as pb

CHUNK = 2 * 1024 * 1024  # below the party's 4 MiB receive limit


def header(sid: bytes, stage: str, sender: str, job_id: str = "") -> pb.VerticalHeader:
    return pb.VerticalHeader(sid=sid, stage=stage, sender=sender, job_id=job_id)


def setup_to_pb(m: SetupReply) -> pb.VerticalSetupReply:
    return pb.VerticalSetupReply(
        header=header(m.sid, "Setup", m.sender), public_key=m.public_key, blinded=m.blinded,
        signature=m.signature,
    )  # fmt: skip


def setup_from_pb(p: pb.VerticalSetupReply) -> SetupReply:
    return SetupReply(p.header.sid, p.header.sender, p.public_key, p.blinded, p.signature)


def blind_to_pb(m: BlindReply) -> pb.VerticalBlindReply:
    return pb.VerticalBlindReply(header=header(m.sid, "Blind", m.sender), doubly_blinded=m.doubly_blinded)


def blind_from_pb(p: pb.VerticalBlindReply) -> BlindReply:
    return BlindReply(p.header.sid, p.header.sender, p.doubly_blinded)


def list_chunks(m: EncryptedList, stage: str, mapping: bytes = b"") -> Iterator[pb.VerticalListChunk]:
    meta = pb.VerticalListMeta(
        sender=m.sender, entries=m.entries, n_ciphertexts=m.n_ciphertexts, signature=m.signature,
        positions=m.positions, mapping=mapping, size=len(m.data),
    )  # fmt: skip
    yield pb.VerticalListChunk(header=header(m.sid, stage, m.sender), meta=meta)
    for offset in range(0, len(m.data), CHUNK):
        yield pb.VerticalListChunk(data=m.data[offset : offset + CHUNK])


async def list_from_chunks(chunks: AsyncIterator[Any], what: str, limit: int) -> tuple[EncryptedList, bytes]:
    """(the list, the mapping bytes) from a stream; refuses more data than announced or than `limit`."""
    first = None
    data = bytearray()
    async for chunk in chunks:
        if first is None:
            if chunk.WhichOneof("part") != "meta":
                raise InvalidInput(f"{what}: the first message must carry meta")
            first = chunk
            if first.meta.size > limit:
                raise InvalidInput(f"{what}: {first.meta.size} bytes announced, over the limit {limit}")
            continue
        if chunk.WhichOneof("part") != "data" or len(data) + len(chunk.data) > first.meta.size:
            raise InvalidInput(f"{what}: a chunk is out of place or beyond the announced size")
        data += chunk.data
    if first is None or len(data) != first.meta.size:
        raise InvalidInput(f"{what}: the stream ended before the announced size")
    meta = first.meta
    listing = EncryptedList(
        first.header.sid, meta.sender, meta.entries, meta.n_ciphertexts, bytes(data), meta.signature,
        meta.positions,
    )  # fmt: skip
    return listing, meta.mapping


def round_to_pb(m: VerticalRoundRequest) -> pb.VerticalRoundSpec:
    return pb.VerticalRoundSpec(
        job_id=m.job_id, release_id=m.release_id, round=m.round,
        cliques=[party_pb.Clique(attrs=list(c)) for c in m.cliques],
        sigma_party2_numerator=m.sigma_party2.numerator, sigma_party2_denominator=m.sigma_party2.denominator,
    )  # fmt: skip


def round_from_pb(p: pb.VerticalRoundSpec) -> VerticalRoundRequest:
    if p.sigma_party2_denominator == 0:
        raise InvalidInput(f"vertical round {p.round}: sigma_party2 denominator is 0")
    return VerticalRoundRequest(
        p.job_id, p.release_id, p.round, tuple(tuple(c.attrs) for c in p.cliques),
        Fraction(p.sigma_party2_numerator, p.sigma_party2_denominator),
    )  # fmt: skip


def aggregate_to_pb(m: AggregateReply) -> pb.VerticalAggregateReply:
    return pb.VerticalAggregateReply(
        header=header(m.sid, "Aggregate", m.sender), data=m.data, signature=m.signature
    )


def aggregate_from_pb(p: pb.VerticalAggregateReply) -> AggregateReply:
    return AggregateReply(p.header.sid, p.header.sender, p.data, p.signature)


def release_chunks(sid: bytes, sender: str, other: AggregateReply) -> Iterator[pb.VerticalReleaseChunk]:
    meta = pb.VerticalListMeta(sender=other.sender, signature=other.signature, size=len(other.data))
    yield pb.VerticalReleaseChunk(header=header(sid, "Release", sender), meta=meta)
    for offset in range(0, len(other.data), CHUNK):
        yield pb.VerticalReleaseChunk(data=other.data[offset : offset + CHUNK])


async def release_from_chunks(
    chunks: AsyncIterator[Any], limit: int
) -> tuple[pb.VerticalHeader, AggregateReply]:
    listing, _ = await list_from_chunks(chunks, "Release", limit)
    reply = AggregateReply(listing.sid, listing.sender, listing.data, listing.signature)
    return pb.VerticalHeader(sid=listing.sid), reply
