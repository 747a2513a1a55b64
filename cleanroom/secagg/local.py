"""In-process driver of one secure-aggregation round (tests, simulation, benchmark).

Plays the transport: asks the `SecAggServer` for each stage's requests, hands them to the `SecAggParty`
objects and the responses back. It can simulate dropouts (`drop_after`), a straggler whose masked input
arrives too late (`late`), a lying coordinator (`tamper` rewrites requests) and corrupted responses.
It measures each party's CPU time and bytes sent per stage and the coordinator's CPU time per stage.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from numpy.typing import NDArray

from cleanroom.errors import InvalidInput, ProtocolAbort
from cleanroom.secagg.manifest import SecAggManifest, session_id
from cleanroom.secagg.messages import STAGE_ORDER, MaskedInput, Stage, message_size
from cleanroom.secagg.party import Removal, SecAggParty
from cleanroom.secagg.reveal import RevealRecord
from cleanroom.secagg.server import SecAggServer

Tamper = Callable[[str, Any], Any]


@dataclass(frozen=True)
class LocalRoundResult:
    total: NDArray[np.int64]
    survivors: tuple[str, ...]
    dropped: tuple[str, ...]
    party_cpu: Mapping[str, Mapping[Stage, float]]
    party_bytes: Mapping[str, Mapping[Stage, int]]
    server_cpu: Mapping[Stage, float]
    trimmed: tuple[str, ...] = ()  # survivors whose removed noise came out of the sum


class LocalRound:
    """One session with every party in this process; parties without an identity key never answer."""

    def __init__(
        self,
        manifest: SecAggManifest,
        identity_keys: Mapping[str, Ed25519PrivateKey],
        *,
        round_number: int = 0,
        plan_hash: str = "local-plan",
        request_digest: bytes = bytes(32),
        reveal_records: Mapping[str, RevealRecord] | None = None,
    ) -> None:
        self.manifest = manifest
        self.sid = session_id(manifest.collaboration_id, round_number, plan_hash, request_digest)
        records = reveal_records or {}
        self.parties = {
            p: SecAggParty(manifest, p, key, self.sid, records.get(p)) for p, key in identity_keys.items()
        }
        self.late_messages: dict[str, MaskedInput] = {}
        self.responses: dict[str, dict[Stage, Any]] = {p: {} for p in self.parties}
        self.server: SecAggServer | None = None
        self.removals: dict[str, Removal] = {}

    def run(
        self,
        inputs: Mapping[str, NDArray[np.integer]],
        *,
        drop_after: Mapping[str, Stage] | None = None,
        late: Collection[str] = (),
        tamper: Tamper | None = None,
        tamper_response: Tamper | None = None,
        removals: Mapping[str, Removal] | None = None,
    ) -> LocalRoundResult:
        """Run all stages; returns the sum or raises ProtocolAbort (the server then refuses to continue).

        `tamper(party, request)` rewrites requests before delivery (a lying coordinator);
        `tamper_response(party, response)` rewrites responses before the coordinator sees them;
        `removals[party]` is the party's `SecAggParty.unmask` removal.
        """
        self.removals = dict(removals or {})
        lengths = {len(v) for v in inputs.values()}
        if len(lengths) != 1 or set(inputs) != set(self.parties):
            raise InvalidInput("inputs must give one vector of a common length for every online party")
        server = self.server = SecAggServer(self.manifest, self.sid, lengths.pop())
        online = set(self.parties)
        party_cpu: dict[str, dict[Stage, float]] = {p: {} for p in self.parties}
        party_bytes: dict[str, dict[Stage, int]] = {p: {} for p in self.parties}
        server_cpu: dict[Stage, float] = {}
        for stage in STAGE_ORDER:
            started = time.process_time()
            requests = _requests(server, stage)
            server_cpu[stage] = time.process_time() - started
            responses: dict[str, Any] = {}
            for party_id, request in requests.items():
                if party_id not in online:
                    continue
                delivered = tamper(party_id, request) if tamper else request
                started = time.process_time()
                response = self._deliver(server, party_id, stage, delivered, inputs[party_id])
                party_cpu[party_id][stage] = time.process_time() - started
                party_bytes[party_id][stage] = message_size(response)
                self.responses[party_id][stage] = response
                if tamper_response:
                    response = tamper_response(party_id, response)
                if stage is Stage.MASKED_INPUT and party_id in late:
                    self.late_messages[party_id] = response
                    online.discard(party_id)
                    continue
                responses[party_id] = response
                if (drop_after or {}).get(party_id) is stage:
                    online.discard(party_id)
            started = time.process_time()
            _collect(server, stage, responses)
            server_cpu[stage] += time.process_time() - started
        total = server.result()
        return LocalRoundResult(
            total, server.survivors, server.dropped, party_cpu, party_bytes, server_cpu, server.trimmed
        )

    def _deliver(
        self, server: SecAggServer, party_id: str, stage: Stage, request: Any, vector: NDArray[np.integer]
    ) -> Any:
        party = self.parties[party_id]
        try:
            if stage is Stage.ADVERTISE_KEYS:
                return party.advertise_keys(request)
            if stage is Stage.SHARE_KEYS:
                return party.share_keys(request)
            if stage is Stage.MASKED_INPUT:
                return party.masked_input(request, vector)
            if stage is Stage.CONSISTENCY_CHECK:
                return party.consistency_check(request)
            return party.unmask(request, self.removals.get(party_id))
        except ProtocolAbort as exc:
            server.abort(str(exc))
            raise


def _requests(server: SecAggServer, stage: Stage) -> dict[str, Any]:
    builders: dict[Stage, Callable[[], Any]] = {
        Stage.ADVERTISE_KEYS: server.advertise_keys_requests,
        Stage.SHARE_KEYS: server.share_keys_requests,
        Stage.MASKED_INPUT: server.masked_input_requests,
        Stage.CONSISTENCY_CHECK: server.consistency_check_requests,
        Stage.UNMASK: server.unmask_requests,
    }
    result: dict[str, Any] = builders[stage]()
    return result


def _collect(server: SecAggServer, stage: Stage, responses: dict[str, Any]) -> None:
    collectors: dict[Stage, Callable[[Any], None]] = {
        Stage.ADVERTISE_KEYS: server.collect_advertise_keys,
        Stage.SHARE_KEYS: server.collect_share_keys,
        Stage.MASKED_INPUT: server.collect_masked_input,
        Stage.CONSISTENCY_CHECK: server.collect_consistency_check,
        Stage.UNMASK: server.collect_unmask,
    }
    collectors[stage](responses)


def run_local_round(
    manifest: SecAggManifest,
    identity_keys: Mapping[str, Ed25519PrivateKey],
    inputs: Mapping[str, NDArray[np.integer]],
    *,
    round_number: int = 0,
    plan_hash: str = "local-plan",
    drop_after: Mapping[str, Stage] | None = None,
    late: Collection[str] = (),
    tamper: Tamper | None = None,
) -> LocalRoundResult:
    """One round in-process; see `LocalRound` to keep hold of the parties and server afterwards."""
    local = LocalRound(manifest, identity_keys, round_number=round_number, plan_hash=plan_hash)
    return local.run(inputs, drop_after=drop_after, late=late, tamper=tamper)


def make_test_collaboration(
    n_parties: int,
    *,
    threshold: int = 0,
    min_parties: int = 2,
    collaboration_id: str = "local",
    neighbours: int = 0,
    neighbour_threshold: int = 0,
) -> tuple[SecAggManifest, dict[str, Ed25519PrivateKey]]:
    """A manifest with fresh identity keys for parties p00, p01, ... (tests and benchmarks); `neighbours` > 0
    gives a sparse masking graph of that degree."""
    ids = tuple(f"p{i:02d}" for i in range(n_parties))
    keys = {p: Ed25519PrivateKey.generate() for p in ids}
    manifest = SecAggManifest(
        collaboration_id=collaboration_id,
        parties=ids,
        identity_keys=tuple(keys[p].public_key() for p in ids),
        min_parties=min_parties,
        schema_hash="0" * 64,
        threshold=threshold,
        neighbours=neighbours,
        neighbour_threshold=neighbour_threshold,
    )
    return manifest, keys
