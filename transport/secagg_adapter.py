"""Drives the pure secure-aggregation state machines (`cleanroom.secagg`) with `transport.wire` values.

`PartySession` wraps one party's `SecAggParty` for one session id; `ServerSession` wraps the coordinator's
`SecAggServer`. Keeping the mapping here means the node and the workflow never depend on the state machines'
message classes directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from transport import wire


def _secagg() -> Any:
    from cleanroom import secagg

    return secagg


class PartySession:
    def __init__(
        self,
        party_id: str,
        identity_key: Any,
        sid: bytes,
        identity_public_keys: dict[str, bytes],
        threshold: int,
    ) -> None:
        from cleanroom.secagg.party import SecAggParty

        self.party_id = party_id
        self.machine = SecAggParty(
            party_id=party_id,
            identity_key=identity_key,
            sid=sid,
            identity_public_keys=identity_public_keys,
            threshold=threshold,
        )
        self._advertised: wire.AdvertisedKeys | None = None

    def advertise(self) -> wire.AdvertisedKeys:
        if self._advertised is None:
            m = self.machine.advertise_keys()
            self._advertised = wire.AdvertisedKeys(
                m.party_id, m.enc_public_key, m.mask_public_key, m.signature
            )
        return self._advertised

    def share_keys(self, roster: list[wire.AdvertisedKeys]) -> list[wire.EncryptedShare]:
        from cleanroom.secagg import messages as msg

        keys = [
            msg.AdvertiseKeys(k.party_id, k.enc_public_key, k.mask_public_key, k.signature) for k in roster
        ]
        out = self.machine.share_keys(keys)
        return [wire.EncryptedShare(s.sender, s.recipient, s.ciphertext) for s in out]

    def masked_input(self, shares: list[wire.EncryptedShare], vector: np.ndarray) -> np.ndarray:
        from cleanroom.secagg import messages as msg

        inbound = [msg.EncryptedShare(s.sender, s.recipient, s.ciphertext) for s in shares]
        return np.asarray(self.machine.masked_input(inbound, vector), dtype=np.uint64)

    def consistency_check(self, survivors: tuple[str, ...]) -> bytes:
        return bytes(self.machine.consistency_check(list(survivors)))

    def unmask(self, survivors: tuple[str, ...], signatures: list[wire.PartySignature]) -> wire.UnmaskShares:
        out = self.machine.unmask(list(survivors), {s.party_id: s.signature for s in signatures})
        return wire.UnmaskShares(
            tuple(wire.RevealedShare(o, s) for o, s in out.seed_shares),
            tuple(wire.RevealedShare(o, s) for o, s in out.mask_key_shares),
        )


class ServerSession:
    """The coordinator's side of one session: collects messages, returns the unmasked int64 sum."""

    def __init__(self, sid: bytes, participants: tuple[str, ...], threshold: int, vector_length: int) -> None:
        from cleanroom.secagg.server import SecAggServer

        self.machine = SecAggServer(
            sid=sid, participants=list(participants), threshold=threshold, vector_length=vector_length
        )

    def unmasked_sum(
        self, masked: dict[str, np.ndarray], survivors: tuple[str, ...], shares: dict[str, wire.UnmaskShares]
    ) -> np.ndarray:
        seed = {p: [(s.owner, s.share) for s in u.seed_shares] for p, u in shares.items()}
        keys = {p: [(s.owner, s.share) for s in u.mask_key_shares] for p, u in shares.items()}
        total = self.machine.unmask(masked, list(survivors), seed, keys)
        return np.asarray(total, dtype=np.uint64).view(np.int64)
