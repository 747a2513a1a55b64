"""Coordinator side of secure aggregation: collects each stage's messages, routes shares, unmasks the sum.

For each stage the transport layer calls `<stage>_requests()` (party id -> request; repeated calls return the
same requests), delivers them, and passes whatever responses arrived to `collect_<stage>(responses)`; a party
missing from `responses` has dropped out. Survivor sets: U1 advertised keys, U2 shared keys, U3 sent masked
input, U4 signed the survivor list, U5 answered Unmask. A malformed or inconsistent response (bad signature,
wrong header, a vector of the wrong length, misaddressed or malformed shares) counts as that party dropping
out at that stage (`rejected` names it and why), so one bad party cannot abort a round for everyone; any
stage ending with fewer than `manifest.quorum` parties aborts the round with `ProtocolAbort`; an aborted
server yields no output. The coordinator only ever holds the running sum of masked vectors.

With a sparse masking graph each party is sent only its neighbours' adverts and shares, is asked only for
shares of its neighbours, and each secret is rebuilt from its subject's neighbours' shares (t_k of them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cleanroom.errors import InvalidInput, PreconditionFailed, ProtocolAbort
from cleanroom.secagg import math as sm
from cleanroom.secagg.manifest import SecAggManifest
from cleanroom.secagg.messages import (
    STAGE_ORDER,
    AdvertiseKeys,
    AdvertiseKeysRequest,
    ConsistencyCheckRequest,
    ConsistencySignature,
    EncryptedShares,
    MaskedInput,
    MaskedInputRequest,
    RevealedShare,
    ShareKeys,
    ShareKeysRequest,
    Stage,
    StageMessage,
    UnmaskRequest,
    UnmaskResponse,
)
from cleanroom.secagg.transcript import advert_transcript, signature_valid, survivors_transcript


class SecAggServer:
    """The coordinator's workflow for one session; call the stages in order."""

    def __init__(self, manifest: SecAggManifest, sid: bytes, vector_length: int) -> None:
        if len(sid) != 32:
            raise InvalidInput(f"sid must be 32 bytes, got {len(sid)}")
        if vector_length < 1:
            raise InvalidInput(f"vector_length ({vector_length}) must be >= 1")
        self.manifest = manifest
        self.sid = sid
        self.vector_length = vector_length
        self._stage_index = 0
        self._requests: dict[str, Any] | None = None
        self._abort_reason: str | None = None
        self._adverts: dict[str, AdvertiseKeys] = {}
        self._shares: dict[str, ShareKeys] = {}
        self._sum = np.zeros(vector_length, dtype=np.uint64)
        self._u3: tuple[str, ...] = ()
        self._signatures: dict[str, ConsistencySignature] = {}
        self._result: NDArray[np.int64] | None = None
        self._recovered_mask_keys: dict[str, bytes] = {}
        self.trimmed: tuple[str, ...] = ()  # survivors whose removed noise was taken out of the sum
        self._graph = manifest.masking_graph(sid)
        self.rejected: dict[str, str] = {}  # party -> why its response was treated as a dropout

    # ------------------------------------------------------------ state

    @property
    def stage(self) -> Stage | None:
        """The stage being worked on; None once the sum is ready."""
        return STAGE_ORDER[self._stage_index] if self._stage_index < len(STAGE_ORDER) else None

    @property
    def aborted(self) -> str | None:
        return self._abort_reason

    @property
    def survivors(self) -> tuple[str, ...]:
        return self._u3

    @property
    def dropped(self) -> tuple[str, ...]:
        """Parties whose pairwise masks had to be removed (in U2 but not U3)."""
        return self._order(set(self._shares) - set(self._u3)) if self._u3 else ()

    @property
    def recovered_mask_keys(self) -> Mapping[str, bytes]:
        """Masking private keys reconstructed for dropped parties (what the coordinator learns of them)."""
        return dict(self._recovered_mask_keys)

    def result(self) -> NDArray[np.int64]:
        """The int64 sum of the survivors' inputs; refuses before Unmask completes or after an abort."""
        if self._abort_reason is not None:
            raise ProtocolAbort(f"no result: {self._abort_reason}")
        if self._result is None:
            raise PreconditionFailed("the sum is available only after the Unmask stage completes")
        return self._result.copy()

    def abort(self, reason: str) -> None:
        """Abort the round (e.g. a party refused); every later call is refused."""
        if self._abort_reason is None:
            self._abort_reason = reason

    def _fail(self, stage: Stage, party: str, reason: str) -> ProtocolAbort:
        message = f"{stage.value}: round aborted, party {party}: {reason}"
        self.abort(message)
        return ProtocolAbort(message)

    def _order(self, parties: Any) -> tuple[str, ...]:
        return tuple(sorted(parties, key=self.manifest.index))

    def _begin(self, stage: Stage) -> dict[str, Any] | None:
        """Check `stage` is current; return the cached requests if already built."""
        if self._abort_reason is not None:
            raise ProtocolAbort(f"{stage.value}: round already aborted ({self._abort_reason})")
        if self.stage is not stage:
            current = self.stage.value if self.stage else "done"
            raise PreconditionFailed(f"{stage.value}: coordinator is at stage {current}")
        return self._requests

    def _collecting(
        self,
        stage: Stage,
        responses: Mapping[str, Any],
        kind: type[StageMessage],
        check: Callable[[str, Any], str | None] | None = None,
    ) -> dict[str, Any]:
        """The well-formed responses, in manifest order; a party whose response is not is dropped."""
        requests = self._begin(stage)
        if requests is None:
            raise PreconditionFailed(f"{stage.value}: responses collected before requests were sent")
        valid: dict[str, Any] = {}
        for party in self._order(p for p in responses if self.manifest.is_member(p)):
            problem = self._header_problem(stage, party, responses[party], requests, kind)
            if problem is None and check is not None:
                problem = check(party, responses[party])
            if problem is None:
                valid[party] = responses[party]
            else:
                self.rejected[party] = f"{stage.value}: {problem}"
        return valid

    def _header_problem(
        self, stage: Stage, party: str, response: Any, requests: Mapping[str, Any], kind: type[StageMessage]
    ) -> str | None:
        if party not in requests:
            return "answered without being asked"
        if not isinstance(response, kind):
            return f"sent {type(response).__name__}, expected {kind.__name__}"
        if response.sid != self.sid or response.stage != stage.value or response.sender != party:
            return "response header (sid, stage or sender) does not match"
        return None

    def _advance(self, stage: Stage, count: int, what: str) -> None:
        if count < self.manifest.quorum:
            raise self._fail(
                stage, "(several)", f"only {count} {what}; at least {self.manifest.quorum} required"
            )
        self._stage_index += 1
        self._requests = None

    def _stage_requests(self, requests: dict[str, Any]) -> dict[str, Any]:
        self._requests = requests
        return dict(requests)

    # ------------------------------------------------------------ AdvertiseKeys

    def advertise_keys_requests(self) -> dict[str, AdvertiseKeysRequest]:
        stage = Stage.ADVERTISE_KEYS
        cached = self._begin(stage)
        if cached is not None:
            return dict(cached)
        header = (self.sid, stage.value, self.manifest.coordinator_id)
        return self._stage_requests({p: AdvertiseKeysRequest(*header) for p in self.manifest.parties})

    def collect_advertise_keys(self, responses: Mapping[str, AdvertiseKeys]) -> None:
        stage = Stage.ADVERTISE_KEYS
        seen: set[bytes] = set()

        def check(party: str, advert: AdvertiseKeys) -> str | None:
            transcript = advert_transcript(self.sid, party, advert.enc_public, advert.mask_public)
            if not signature_valid(self.manifest.identity_key(party), advert.signature, transcript):
                return "advert signature does not verify"
            if {advert.enc_public, advert.mask_public} & seen or advert.enc_public == advert.mask_public:
                return "advert repeats a public key"
            seen.update((advert.enc_public, advert.mask_public))
            return None

        self._adverts = self._collecting(stage, responses, AdvertiseKeys, check)
        self._advance(stage, len(self._adverts), "parties advertised keys")

    # ------------------------------------------------------------ ShareKeys

    def share_keys_requests(self) -> dict[str, ShareKeysRequest]:
        stage = Stage.SHARE_KEYS
        cached = self._begin(stage)
        if cached is not None:
            return dict(cached)
        header = (self.sid, stage.value, self.manifest.coordinator_id)

        def roster(party: str) -> tuple[AdvertiseKeys, ...]:
            circle = self._graph.closed(party)
            return tuple(a for p, a in self._adverts.items() if p in circle)

        return self._stage_requests({p: ShareKeysRequest(*header, roster(p)) for p in self._adverts})

    def collect_share_keys(self, responses: Mapping[str, ShareKeys]) -> None:
        stage = Stage.SHARE_KEYS

        def check(party: str, message: ShareKeys) -> str | None:
            recipients = [item.recipient for item in message.shares]
            expected = [p for p in self._adverts if self._graph.adjacent(party, p)]
            if sorted(recipients) != sorted(expected) or any(i.sender != party for i in message.shares):
                return "shares are not addressed to exactly the neighbours that advertised"
            return None

        self._shares = self._collecting(stage, responses, ShareKeys, check)
        self._advance(stage, len(self._shares), "parties shared keys")

    # ------------------------------------------------------------ MaskedInput

    def masked_input_requests(self) -> dict[str, MaskedInputRequest]:
        stage = Stage.MASKED_INPUT
        cached = self._begin(stage)
        if cached is not None:
            return dict(cached)
        inbox: dict[str, list[EncryptedShares]] = {p: [] for p in self._shares}
        for message in self._shares.values():
            for item in message.shares:
                if item.recipient in inbox:
                    inbox[item.recipient].append(item)
        header = (self.sid, stage.value, self.manifest.coordinator_id)
        return self._stage_requests({p: MaskedInputRequest(*header, tuple(inbox[p])) for p in inbox})

    def collect_masked_input(self, responses: Mapping[str, MaskedInput]) -> None:
        stage = Stage.MASKED_INPUT
        vectors: dict[str, NDArray[np.uint64]] = {}

        def check(party: str, message: MaskedInput) -> str | None:
            try:
                vector = sm.vector_from_bytes(message.vector, self.vector_length, what=f"party {party}")
            except InvalidInput as exc:
                return str(exc)
            vectors[party] = vector
            return None

        accepted = self._collecting(stage, responses, MaskedInput, check)
        for party in accepted:
            np.add(self._sum, vectors[party], out=self._sum)
        self._u3 = tuple(accepted)
        self._advance(stage, len(self._u3), "parties sent masked input")

    # ------------------------------------------------------------ ConsistencyCheck

    def consistency_check_requests(self) -> dict[str, ConsistencyCheckRequest]:
        stage = Stage.CONSISTENCY_CHECK
        cached = self._begin(stage)
        if cached is not None:
            return dict(cached)
        header = (self.sid, stage.value, self.manifest.coordinator_id)
        return self._stage_requests({p: ConsistencyCheckRequest(*header, self._u3) for p in self._u3})

    def collect_consistency_check(self, responses: Mapping[str, ConsistencySignature]) -> None:
        stage = Stage.CONSISTENCY_CHECK
        digest = self._graph.digest if self.manifest.sparse else b""
        transcript = survivors_transcript(self.sid, self._u3, digest)

        def check(party: str, message: ConsistencySignature) -> str | None:
            if not signature_valid(self.manifest.identity_key(party), message.signature, transcript):
                return "signature on the survivor list does not verify"
            return None

        self._signatures = self._collecting(stage, responses, ConsistencySignature, check)
        self._advance(stage, len(self._signatures), "parties signed the survivor list")

    # ------------------------------------------------------------ Unmask

    def unmask_requests(self) -> dict[str, UnmaskRequest]:
        stage = Stage.UNMASK
        cached = self._begin(stage)
        if cached is not None:
            return dict(cached)
        signatures = tuple(self._signatures.values())

        def request(party: str) -> UnmaskRequest:
            header = (self.sid, stage.value, self.manifest.coordinator_id)
            seeds, keys = self._held_by(party)
            return UnmaskRequest(*header, self._u3, signatures, seeds, keys)

        return self._stage_requests({p: request(p) for p in self._signatures})

    def _held_by(self, party: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Whose shares `party` holds (U2 within its closed neighbourhood): survivors, then dropped."""
        circle = self._graph.closed(party)
        return tuple(u for u in self._u3 if u in circle), tuple(d for d in self.dropped if d in circle)

    def collect_unmask(self, responses: Mapping[str, UnmaskResponse]) -> None:
        stage = Stage.UNMASK
        decoded: dict[str, tuple[dict[str, sm.Share], dict[str, sm.Share]]] = {}

        removed: dict[str, NDArray[np.uint64]] = {}

        def check(party: str, response: UnmaskResponse) -> str | None:
            seed_subjects, key_subjects = self._held_by(party)
            try:
                seeds = self._decode_shares(party, response.seed_shares, seed_subjects, "seed")
                keys = self._decode_shares(party, response.key_shares, key_subjects, "key")
                if response.removed_noise:
                    removed[party] = sm.vector_from_bytes(
                        response.removed_noise, self.vector_length, what=f"party {party}'s removed noise"
                    )
            except InvalidInput as exc:
                return str(exc)
            decoded[party] = (seeds, keys)
            return None

        accepted = self._collecting(stage, responses, UnmaskResponse, check)
        if len(accepted) < self.manifest.share_threshold:
            raise self._fail(stage, "(several)", f"only {len(accepted)} parties revealed valid shares")
        total = self._sum.copy()
        for u in self._u3:
            seed = self._combine(
                u, [decoded[p][0][u] for p in accepted if u in decoded[p][0]], "self-mask seed"
            )
            sm.add_prg(total, sm.self_mask_key(seed, self.sid, u), -1)
        for d in self.dropped:
            key = self._combine(d, [decoded[p][1][d] for p in accepted if d in decoded[p][1]], "masking key")
            self._remove_pair_masks(total, d, key)
        self.trimmed = tuple(p for p in accepted if p in removed)
        for party in self.trimmed:
            np.subtract(total, removed[party], out=total)
        self._result = sm.decode_uint64(total)
        self._stage_index += 1
        self._requests = None

    def _decode_shares(
        self, party: str, revealed: tuple[RevealedShare, ...], subjects: tuple[str, ...], kind: str
    ) -> dict[str, sm.Share]:
        """Each subject's share from `party`, or InvalidInput saying what is wrong with the response."""
        if [item.subject for item in revealed] != list(subjects):
            raise InvalidInput(f"revealed {kind} shares for the wrong parties")
        shares = {}
        for item in revealed:
            share = sm.decode_share(item.share)
            if share.x != self.manifest.share_point(party):
                raise InvalidInput(f"{kind} share of party {item.subject} has a foreign x")
            shares[item.subject] = share
        return shares

    def _combine(self, subject: str, shares: list[sm.Share], what: str) -> bytes:
        try:
            return sm.combine_shares(shares, self.manifest.share_threshold)
        except InvalidInput as exc:
            raise self._fail(Stage.UNMASK, subject, f"cannot reconstruct its {what}: {exc}") from exc

    def _remove_pair_masks(self, total: NDArray[np.uint64], dropped: str, key_bytes: bytes) -> None:
        """Cancel the masks `dropped` paired with survivors (u added +PRG(k) if u < dropped, else -PRG(k))."""
        stage = Stage.UNMASK
        try:
            private = sm.x25519_from_private_bytes(key_bytes, what=f"party {dropped}")
        except InvalidInput as exc:
            raise self._fail(stage, dropped, str(exc)) from exc
        if sm.x25519_public_bytes(private) != self._adverts[dropped].mask_public:
            raise self._fail(stage, dropped, "reconstructed masking key does not match its advertised key")
        self._recovered_mask_keys[dropped] = key_bytes
        for u in self._u3:
            if not self._graph.adjacent(dropped, u):
                continue  # they never paired masks
            shared = sm.x25519_shared(private, self._adverts[u].mask_public, what=f"party {u}")
            key = sm.pair_key(shared, self.sid, sm.PURPOSE_PAIR_MASK, u, dropped)
            sm.add_prg(total, key, -1 if u < dropped else +1)
