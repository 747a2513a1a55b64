"""All conversion between protobuf messages (transport.v1) and the grpc-free value objects in transport.wire.

Vectors travel as packed little-endian uint64 bytes (8 bytes per cell), never as repeated fields.
"""

from __future__ import annotations

from fractions import Fraction

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
    )


def hello_reply_from_pb(p: pb.HelloResponse) -> wire.HelloReply:
    return wire.HelloReply(p.party_id, p.approved, p.schema_hash, p.software_version, p.remaining_rho)


def round_to_pb(m: wire.RoundRequest) -> pb.RoundSpec:
    return pb.RoundSpec(
        job_id=m.job_id,
        release_id=m.release_id,
        round=m.round,
        sid=m.sid,
        cliques=[pb.Clique(attrs=list(c)) for c in m.cliques],
        sigma_party2_numerator=m.sigma_party2.numerator,
        sigma_party2_denominator=m.sigma_party2.denominator,
        participants=list(m.participants),
        threshold=m.threshold,
    )


def round_from_pb(p: pb.RoundSpec) -> wire.RoundRequest:
    if p.sigma_party2_denominator == 0:
        raise InvalidInput(f"round {p.round}: sigma_party2 denominator is 0")
    return wire.RoundRequest(
        job_id=p.job_id,
        release_id=p.release_id,
        round=p.round,
        sid=p.sid,
        cliques=tuple(tuple(c.attrs) for c in p.cliques),
        sigma_party2=Fraction(p.sigma_party2_numerator, p.sigma_party2_denominator),
        participants=tuple(p.participants),
        threshold=p.threshold,
    )


def keys_to_pb(m: wire.AdvertisedKeys) -> pb.AdvertisedKeys:
    return pb.AdvertisedKeys(
        party_id=m.party_id,
        enc_public_key=m.enc_public_key,
        mask_public_key=m.mask_public_key,
        signature=m.signature,
    )


def keys_from_pb(p: pb.AdvertisedKeys) -> wire.AdvertisedKeys:
    return wire.AdvertisedKeys(p.party_id, p.enc_public_key, p.mask_public_key, p.signature)


def share_to_pb(m: wire.EncryptedShare) -> pb.EncryptedShare:
    return pb.EncryptedShare(sender=m.sender, recipient=m.recipient, ciphertext=m.ciphertext)


def share_from_pb(p: pb.EncryptedShare) -> wire.EncryptedShare:
    return wire.EncryptedShare(p.sender, p.recipient, p.ciphertext)


def signature_to_pb(m: wire.PartySignature) -> pb.PartySignature:
    return pb.PartySignature(party_id=m.party_id, signature=m.signature)


def signature_from_pb(p: pb.PartySignature) -> wire.PartySignature:
    return wire.PartySignature(p.party_id, p.signature)


def unmask_to_pb(m: wire.UnmaskShares) -> pb.UnmaskResponse:
    return pb.UnmaskResponse(
        seed_shares=[pb.RevealedShare(owner=s.owner, share=s.share) for s in m.seed_shares],
        mask_key_shares=[pb.RevealedShare(owner=s.owner, share=s.share) for s in m.mask_key_shares],
    )


def unmask_from_pb(p: pb.UnmaskResponse) -> wire.UnmaskShares:
    return wire.UnmaskShares(
        tuple(wire.RevealedShare(s.owner, s.share) for s in p.seed_shares),
        tuple(wire.RevealedShare(s.owner, s.share) for s in p.mask_key_shares),
    )


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
