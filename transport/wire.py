"""Grpc-free value objects for the transport-level messages (handshake, round spec, results, budget).

Secure-aggregation messages are `cleanroom.secagg.messages` classes. `transport.serde` is the only code
converting either to and from protobuf messages.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction

from cleanroom.errors import InvalidInput
from cleanroom.secagg.math import clique_fields, encode_fields

Clique = tuple[str, ...]
RESULT_FILE_NAMES = ("synthetic.csv", "synthetic.parquet", "model.onnx", "report.json")
# what retention deletes: the delivered files and the report each party renders from them
RETAINED_FILE_NAMES = (*RESULT_FILE_NAMES, "report.html")


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
    next_round: int = 0
    plan_remaining_rho: float = 0.0


@dataclass(frozen=True)
class RoundRequest:
    """One measurement round = one secure-aggregation session (its sid is in the stage header)."""

    job_id: str
    release_id: str
    round: int
    cliques: tuple[Clique, ...]
    sigma_party2: Fraction
    statistic: str = ""  # evaluation rounds: the statistic measured instead of cliques
    length: int = 0  # evaluation rounds: cells of the statistic's vector

    def __post_init__(self) -> None:
        if self.sigma_party2 <= 0:
            raise InvalidInput(f"round {self.round}: sigma_party2 ({self.sigma_party2}) must be > 0")
        if self.statistic and (self.cliques or self.length < 1):
            raise InvalidInput(
                f"round {self.round}: statistic {self.statistic!r} needs length >= 1, no cliques"
            )
        if not self.cliques and not self.statistic:
            raise InvalidInput(f"round {self.round}: no cliques to measure")
        if not self.release_id:
            raise InvalidInput(f"round {self.round}: release_id must not be empty")

    def digest(self) -> bytes:
        """SHA-256 of every field, unambiguously encoded: bound into the round's session id."""
        cliques = clique_fields(self.cliques)
        fields = encode_fields(
            "cleanroom/round-request/v1",
            self.job_id,
            self.release_id,
            self.round,
            *cliques,
            str(self.sigma_party2.numerator),
            str(self.sigma_party2.denominator),
            self.statistic,
            self.length,
        )
        return hashlib.sha256(fields).digest()


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
