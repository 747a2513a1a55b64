"""Grpc-free value objects for what travels between coordinator and parties (mirrors proto/transport/v1).

`transport.serde` is the only code converting these to and from protobuf messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from cleanroom.errors import InvalidInput

Clique = tuple[str, ...]
RESULT_FILE_NAMES = ("synthetic.csv", "synthetic.parquet", "model.skops", "report.json")


@dataclass(frozen=True)
class Hello:
    job_id: str
    plan_hash: str
    schema_hash: str
    coordinator_id: str
    software_version: str = ""


@dataclass(frozen=True)
class HelloReply:
    party_id: str
    approved: bool
    schema_hash: str
    software_version: str
    remaining_rho: float


@dataclass(frozen=True)
class RoundRequest:
    """One measurement round = one secure-aggregation session."""

    job_id: str
    release_id: str
    round: int
    sid: bytes
    cliques: tuple[Clique, ...]
    sigma_party2: Fraction
    participants: tuple[str, ...]
    threshold: int

    def __post_init__(self) -> None:
        if self.sigma_party2 <= 0:
            raise InvalidInput(f"round {self.round}: sigma_party2 ({self.sigma_party2}) must be > 0")
        if not self.cliques:
            raise InvalidInput(f"round {self.round}: no cliques to measure")
        if len(set(self.participants)) != len(self.participants):
            raise InvalidInput(f"round {self.round}: participants {self.participants} contain duplicates")
        if not 0 < self.threshold <= len(self.participants):
            raise InvalidInput(
                f"round {self.round}: threshold ({self.threshold}) must be in [1, {len(self.participants)}]"
            )


@dataclass(frozen=True)
class AdvertisedKeys:
    party_id: str
    enc_public_key: bytes
    mask_public_key: bytes
    signature: bytes


@dataclass(frozen=True)
class EncryptedShare:
    sender: str
    recipient: str
    ciphertext: bytes


@dataclass(frozen=True)
class PartySignature:
    party_id: str
    signature: bytes


@dataclass(frozen=True)
class RevealedShare:
    owner: str
    share: bytes


@dataclass(frozen=True)
class UnmaskShares:
    seed_shares: tuple[RevealedShare, ...]
    mask_key_shares: tuple[RevealedShare, ...]


@dataclass(frozen=True)
class ResultFile:
    name: str
    size: int
    sha256: str

    def __post_init__(self) -> None:
        if self.name not in RESULT_FILE_NAMES:
            raise InvalidInput(f"result file name ({self.name!r}) must be one of {RESULT_FILE_NAMES}")
        if self.size < 0:
            raise InvalidInput(f"result file {self.name}: size ({self.size}) must be >= 0")


@dataclass(frozen=True)
class BudgetStatus:
    total_rho: float
    spent_rho: float
    remaining_rho: float
    bytes_uploaded: int
