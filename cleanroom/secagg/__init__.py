"""Secure aggregation of int64 vectors (Bonawitz et al., CCS 2017, with consistency check and signatures).

Pure code, no transport: `math` holds the primitives, `messages` the wire dataclasses, `party` the party-side
state machine, `server` the coordinator workflow and `local` an in-process driver for tests and benchmarks.
"""

from cleanroom.secagg.manifest import SecAggManifest, default_threshold, required_threshold, session_id
from cleanroom.secagg.messages import Stage
from cleanroom.secagg.party import PartyState, SecAggParty
from cleanroom.secagg.reveal import (
    MemoryRevealRecord,
    RevealRecord,
    ShareKind,
    SqliteRevealRecord,
)
from cleanroom.secagg.server import SecAggServer

__all__ = [
    "MemoryRevealRecord",
    "PartyState",
    "RevealRecord",
    "SecAggManifest",
    "SecAggParty",
    "SecAggServer",
    "ShareKind",
    "SqliteRevealRecord",
    "Stage",
    "default_threshold",
    "required_threshold",
    "session_id",
]
