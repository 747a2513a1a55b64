"""A scriptable coordinator for tests: drives one secure-aggregation round stage by stage, and can lie.

The transport is pluggable: `node_call` calls in-process `PartyNode` methods, the integration suite passes
`PartyClient.stage` (real gRPC over mutual TLS). Hooks let a test play a dishonest coordinator: give
parties different round requests, leave parties out, rewrite any request before it is sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cleanroom.errors import CleanroomError
from cleanroom.secagg.manifest import SecAggManifest, session_id
from cleanroom.secagg.server import SecAggServer
from transport import wire

Call = Callable[[str, str, Any, wire.RoundRequest], Awaitable[Any]]
Tamper = Callable[[str, str, Any], Any]  # (party, stage, request) -> the request actually sent
NODE_METHODS = {
    "ShareKeys": "share_keys",
    "MaskedInput": "masked_input",
    "ConsistencyCheck": "consistency_check",
    "Unmask": "unmask",
}


@dataclass
class RoundOutcome:
    total: np.ndarray | None
    survivors: tuple[str, ...]
    errors: dict[str, CleanroomError] = field(default_factory=dict)  # party -> its refusal
    aborted: str | None = None
    trimmed: tuple[str, ...] = ()  # survivors whose removed noise the server took out of the sum


def round_sid(manifest: SecAggManifest, plan_hash: str, spec: wire.RoundRequest) -> bytes:
    return session_id(manifest.collaboration_id, spec.round, plan_hash, spec.digest())


def node_call(nodes: Mapping[str, Any]) -> Call:
    """Stage calls straight into in-process PartyNode objects."""

    async def call(party: str, stage: str, request: Any, spec: wire.RoundRequest) -> Any:
        node = nodes[party]
        if stage == "AdvertiseKeys":
            return node.advertise_keys(spec, request)
        return getattr(node, NODE_METHODS[stage])(request)

    return call


async def drive_round(
    manifest: SecAggManifest,
    plan_hash: str,
    spec: wire.RoundRequest,
    length: int,
    call: Call,
    *,
    parties: Iterable[str] | None = None,
    spec_for: Callable[[str], wire.RoundRequest] | None = None,
    tamper: Tamper | None = None,
    transcript: dict[str, dict[str, Any]] | None = None,
) -> RoundOutcome:
    """Run one session; a party's refusal makes it drop out; returns the sum or why the round aborted.

    `transcript` (stage -> party -> response) is filled as responses arrive, for tamper hooks to use.
    """
    server = SecAggServer(manifest, round_sid(manifest, plan_hash, spec), length)
    asked = set(parties if parties is not None else manifest.parties)
    outcome = RoundOutcome(None, ())
    stages = (
        ("AdvertiseKeys", server.advertise_keys_requests, server.collect_advertise_keys),
        ("ShareKeys", server.share_keys_requests, server.collect_share_keys),
        ("MaskedInput", server.masked_input_requests, server.collect_masked_input),
        ("ConsistencyCheck", server.consistency_check_requests, server.collect_consistency_check),
        ("Unmask", server.unmask_requests, server.collect_unmask),
    )
    try:
        for name, build, collect in stages:
            responses: dict[str, Any] = {}
            if transcript is not None:
                transcript[name] = responses
            for party, request in build().items():
                if party not in asked:
                    continue
                sent = tamper(party, name, request) if tamper else request
                own_spec = spec_for(party) if spec_for else spec
                try:
                    responses[party] = await call(party, name, sent, own_spec)
                except CleanroomError as error:
                    outcome.errors[party] = error
            collect(responses)
        outcome.total, outcome.survivors = np.asarray(server.result()), tuple(server.survivors)
        outcome.trimmed = server.trimmed
    except CleanroomError as error:
        outcome.aborted = str(error)
    return outcome


def client_call(clients: Mapping[str, Any]) -> Call:
    """Stage calls over real gRPC + mutual TLS through `coordinator.client.PartyClient` objects."""

    async def call(party: str, stage: str, request: Any, spec: wire.RoundRequest) -> Any:
        return await clients[party].stage(stage, request, spec)

    return call
