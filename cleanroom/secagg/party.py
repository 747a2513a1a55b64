"""Party side of secure aggregation: a state machine with one method per stage.

A `SecAggParty` lives for one session (sid). Each stage method checks the transition table, the message header
(sid, stage, coordinator as sender) and everything the coordinator claims (signatures, survivor lists, share
requests); any violation raises `ProtocolAbort` naming the stage and the party at fault and leaves the party
ABORTED, after which it answers nothing. A stage out of order raises `PreconditionFailed`. Repeating the
most recent request verbatim returns the identical response (idempotent retries, no fresh randomness).

With a sparse masking graph (manifest `neighbours` > 0) the party computes its closed neighbourhood itself
from the sid and the roster, refuses any advert or share from outside it, refuses a neighbourhood the
coordinator thins below `neighbour_quorum`, shares its secrets only within it and reveals shares only of its
neighbours.
"""

from __future__ import annotations

import enum
import secrets
import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from numpy.typing import NDArray

from cleanroom.errors import InvalidInput, PreconditionFailed, ProtocolAbort
from cleanroom.secagg import math as sm
from cleanroom.secagg.manifest import SecAggManifest
from cleanroom.secagg.messages import (
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
from cleanroom.secagg.reveal import MemoryRevealRecord, RevealRecord, ShareKind
from cleanroom.secagg.transcript import (
    advert_transcript,
    shares_associated_data,
    signature_valid,
    survivors_transcript,
)

R = TypeVar("R")
Removal = Callable[[tuple[str, ...]], "NDArray[np.integer] | None"]


class PartyState(enum.Enum):
    NEW = "new"
    ADVERTISED = "advertised"
    SHARED = "shared"
    MASKED = "masked"
    CONFIRMED = "confirmed"
    DONE = "done"
    ABORTED = "aborted"


TRANSITIONS: Mapping[PartyState, Mapping[Stage, PartyState]] = MappingProxyType(
    {
        PartyState.NEW: {Stage.ADVERTISE_KEYS: PartyState.ADVERTISED},
        PartyState.ADVERTISED: {Stage.SHARE_KEYS: PartyState.SHARED},
        PartyState.SHARED: {Stage.MASKED_INPUT: PartyState.MASKED},
        PartyState.MASKED: {Stage.CONSISTENCY_CHECK: PartyState.CONFIRMED},
        PartyState.CONFIRMED: {Stage.UNMASK: PartyState.DONE},
        PartyState.DONE: {},
        PartyState.ABORTED: {},
    }
)


class SecAggParty:
    """One party's view of one secure-aggregation session."""

    def __init__(
        self,
        manifest: SecAggManifest,
        party_id: str,
        identity_key: Ed25519PrivateKey,
        sid: bytes,
        reveal_record: RevealRecord | None = None,
    ) -> None:
        manifest.index(party_id)
        own_public = identity_key.public_key().public_bytes_raw()
        if own_public != manifest.identity_key(party_id).public_bytes_raw():
            raise InvalidInput(f"identity key of party {party_id} does not match the manifest")
        if len(sid) != 32:
            raise InvalidInput(f"sid must be 32 bytes, got {len(sid)}")
        self.manifest = manifest
        self.party_id = party_id
        self.sid = sid
        self._identity = identity_key
        self._record: RevealRecord = reveal_record if reveal_record is not None else MemoryRevealRecord()
        self._state = PartyState.NEW
        self._last: tuple[Stage, Any, Any] | None = None
        self._lock = threading.Lock()  # a gRPC server may deliver concurrent (retried) calls
        self._enc_key = sm.generate_x25519()
        self._mask_key = sm.generate_x25519()
        self._seed = b""
        self._own_advert: AdvertiseKeys | None = None
        self._adverts: dict[str, AdvertiseKeys] = {}
        self._enc_keys: dict[str, bytes] = {}  # peer -> AEAD key for the shares exchanged with it
        self._held: dict[str, tuple[sm.Share, sm.Share]] = {}  # subject -> (seed share, key share)
        self._u2: tuple[str, ...] = ()  # closed-neighbourhood members whose shares this party holds
        self._u3: tuple[str, ...] = ()
        self._graph = manifest.masking_graph(sid)
        self._circle = self._graph.closed(party_id)

    @property
    def state(self) -> PartyState:
        return self._state

    # ------------------------------------------------------------ stage methods

    def advertise_keys(self, request: AdvertiseKeysRequest) -> AdvertiseKeys:
        return self._step(Stage.ADVERTISE_KEYS, request, AdvertiseKeysRequest, self._advertise)

    def share_keys(self, request: ShareKeysRequest) -> ShareKeys:
        return self._step(Stage.SHARE_KEYS, request, ShareKeysRequest, lambda: self._share(request))

    def masked_input(self, request: MaskedInputRequest, vector: NDArray[np.integer]) -> MaskedInput:
        """Mask `vector` (int64 values, e.g. this party's noised counts) for the sum."""
        values = sm.encode_int64(vector)  # validated before any state change (a bad vector is a local error)
        return self._step(
            Stage.MASKED_INPUT, request, MaskedInputRequest, lambda: self._mask(request, values)
        )

    def consistency_check(self, request: ConsistencyCheckRequest) -> ConsistencySignature:
        return self._step(
            Stage.CONSISTENCY_CHECK, request, ConsistencyCheckRequest, lambda: self._sign(request)
        )

    def unmask(self, request: UnmaskRequest, removal: Removal | None = None) -> UnmaskResponse:
        """Reveal the shares the verified request asks for; `removal(survivors)` (called at most once, with
        the survivor list this party signed and the request proved a quorum signed) gives the noise this
        party may take back out of its masked input, or None."""
        return self._step(Stage.UNMASK, request, UnmaskRequest, lambda: self._unmask(request, removal))

    # ------------------------------------------------------------ transition machinery

    def _is_retry(self, stage: Stage, request: object) -> bool:
        return self._last is not None and self._last[0] is stage and self._last[1] == request

    def _step(self, stage: Stage, request: object, kind: type[StageMessage], action: Callable[[], R]) -> R:
        with self._lock:
            return self._step_locked(stage, request, kind, action)

    def _step_locked(
        self, stage: Stage, request: object, kind: type[StageMessage], action: Callable[[], R]
    ) -> R:
        if self._state is PartyState.ABORTED:
            raise PreconditionFailed(f"{stage.value}: party {self.party_id} has aborted this session")
        if self._last is not None and self._is_retry(stage, request):
            response: R = self._last[2]
            return response
        next_state = TRANSITIONS[self._state].get(stage)
        if next_state is None:
            allowed = ", ".join(s.value for s in TRANSITIONS[self._state]) or "none"
            raise PreconditionFailed(
                f"{stage.value}: party {self.party_id} is in state {self._state.value};"
                f" next allowed: {allowed}"
            )
        try:
            self._check_header(stage, request, kind)
            response = action()
        except ProtocolAbort:
            self._state = PartyState.ABORTED
            raise
        except InvalidInput as exc:
            self._state = PartyState.ABORTED
            raise self._abort(stage, str(exc)) from exc
        self._state = next_state
        self._last = (stage, request, response)
        return response

    def _abort(self, stage: Stage, reason: str) -> ProtocolAbort:
        return ProtocolAbort(f"{stage.value}: party {self.party_id} aborts the session: {reason}")

    def _check_header(self, stage: Stage, request: object, kind: type[StageMessage]) -> None:
        if not isinstance(request, kind):
            raise self._abort(stage, f"expected {kind.__name__}, got {type(request).__name__}")
        if request.sid != self.sid:
            raise self._abort(stage, f"request carries a foreign session id {request.sid.hex()[:16]}...")
        if request.stage != stage.value:
            raise self._abort(stage, f"request is labelled stage {request.stage!r}")
        if request.sender != self.manifest.coordinator_id:
            raise self._abort(stage, f"request sent by {request.sender!r}, not the coordinator")

    def _order(self, parties: set[str] | list[str] | tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(parties, key=self.manifest.index))

    # ------------------------------------------------------------ AdvertiseKeys and ShareKeys

    def _advertise(self) -> AdvertiseKeys:
        enc_public = sm.x25519_public_bytes(self._enc_key)
        mask_public = sm.x25519_public_bytes(self._mask_key)
        signature = self._identity.sign(advert_transcript(self.sid, self.party_id, enc_public, mask_public))
        advert = AdvertiseKeys(
            self.sid, Stage.ADVERTISE_KEYS.value, self.party_id, enc_public, mask_public, signature
        )
        self._own_advert = advert
        return advert

    def _check_advert(self, advert: AdvertiseKeys) -> None:
        stage, who = Stage.SHARE_KEYS, advert.sender
        if not self.manifest.is_member(who):
            raise self._abort(stage, f"advert from non-member {who!r}")
        if who not in self._circle:
            raise self._abort(stage, f"advert from party {who}, not a neighbour in this session's graph")
        if who in self._adverts:
            raise self._abort(stage, f"two adverts for party {who}")
        if advert.sid != self.sid or advert.stage != Stage.ADVERTISE_KEYS.value:
            raise self._abort(stage, f"advert of party {who} belongs to another session or stage")
        transcript = advert_transcript(self.sid, who, advert.enc_public, advert.mask_public)
        if not signature_valid(self.manifest.identity_key(who), advert.signature, transcript):
            raise self._abort(stage, f"advert of party {who} has an invalid signature")
        if who == self.party_id and advert != self._own_advert:
            raise self._abort(stage, "the roster misstates this party's own keys")
        self._adverts[who] = advert

    def _share(self, request: ShareKeysRequest) -> ShareKeys:
        for advert in request.adverts:
            self._check_advert(advert)
        stage = Stage.SHARE_KEYS
        if self.party_id not in self._adverts:
            raise self._abort(stage, "the roster omits this party")
        keys = [a.enc_public for a in self._adverts.values()] + [
            a.mask_public for a in self._adverts.values()
        ]
        if len(set(keys)) != len(keys):
            raise self._abort(stage, "the roster repeats a public key")
        self._require_quorum(stage, len(self._adverts), "parties advertised keys")
        self._seed = secrets.token_bytes(sm.SECRET_BYTES)
        u1 = self._order(list(self._adverts))
        points = [self.manifest.share_point(v) for v in u1]
        threshold = self.manifest.share_threshold
        seed_shares = sm.split_secret(self._seed, threshold, points)
        key_shares = sm.split_secret(sm.x25519_private_bytes(self._mask_key), threshold, points)
        sealed = []
        for v, seed_share, key_share in zip(u1, seed_shares, key_shares, strict=True):
            if v == self.party_id:
                self._held[v] = (seed_share, key_share)
                continue
            plaintext = sm.encode_share(seed_share) + sm.encode_share(key_share)
            aad = shares_associated_data(self.sid, self.party_id, v)
            sealed.append(EncryptedShares(self.party_id, v, sm.seal(self._pair_enc_key(v), plaintext, aad)))
        return ShareKeys(self.sid, stage.value, self.party_id, tuple(sealed))

    def _pair_enc_key(self, peer: str) -> bytes:
        if peer not in self._enc_keys:
            shared = sm.x25519_shared(self._enc_key, self._adverts[peer].enc_public, what=f"party {peer}")
            self._enc_keys[peer] = sm.pair_key(shared, self.sid, sm.PURPOSE_ENCRYPT, self.party_id, peer)
        return self._enc_keys[peer]

    def _require_quorum(self, stage: Stage, count: int, what: str) -> None:
        """At least the neighbourhood quorum (the quorum itself for a complete graph) of `what`."""
        needed = self.manifest.neighbour_quorum
        if count < needed:
            where = " of this party's neighbourhood" if self.manifest.sparse else ""
            raise self._abort(stage, f"only {count} {what}{where}; at least {needed} required")

    def _require_global_quorum(self, stage: Stage, count: int, what: str) -> None:
        if count < self.manifest.quorum:
            raise self._abort(stage, f"only {count} {what}; at least {self.manifest.quorum} required")

    # ------------------------------------------------------------ MaskedInput

    def _receive_shares(self, shares: tuple[EncryptedShares, ...]) -> None:
        stage, own_point = Stage.MASKED_INPUT, self.manifest.share_point(self.party_id)
        for item in shares:
            who = item.sender
            if who not in self._adverts or who == self.party_id or who in self._held:
                raise self._abort(stage, f"unexpected or repeated shares from party {who!r}")
            if item.recipient != self.party_id:
                raise self._abort(stage, f"shares from party {who} are addressed to {item.recipient!r}")
            aad = shares_associated_data(self.sid, who, self.party_id)
            try:
                plaintext = sm.open_sealed(self._pair_enc_key(who), item.ciphertext, aad, what=f"party {who}")
                seed_share = sm.decode_share(plaintext[: sm.SHARE_BYTES])
                key_share = sm.decode_share(plaintext[sm.SHARE_BYTES :])
            except InvalidInput as exc:
                raise self._abort(stage, f"shares from party {who} rejected: {exc}") from exc
            if seed_share.x != own_point or key_share.x != own_point:
                raise self._abort(stage, f"shares from party {who} are for another share point")
            self._held[who] = (seed_share, key_share)

    def _mask(self, request: MaskedInputRequest, values: NDArray[np.uint64]) -> MaskedInput:
        self._receive_shares(request.shares)
        self._u2 = self._order(list(self._held))
        self._require_quorum(Stage.MASKED_INPUT, len(self._u2), "parties shared keys")
        sm.add_prg(values, sm.self_mask_key(self._seed, self.sid, self.party_id), +1)
        for peer in self._u2:  # the neighbours whose shares arrived
            if peer != self.party_id:
                peer_public = self._adverts[peer].mask_public
                shared = sm.x25519_shared(self._mask_key, peer_public, what=f"party {peer}")
                key = sm.pair_key(shared, self.sid, sm.PURPOSE_PAIR_MASK, self.party_id, peer)
                sm.add_prg(values, key, +1 if self.party_id < peer else -1)
        return MaskedInput(self.sid, Stage.MASKED_INPUT.value, self.party_id, sm.vector_to_bytes(values))

    # ------------------------------------------------------------ ConsistencyCheck and Unmask

    def _transcript(self, survivors: tuple[str, ...]) -> bytes:
        digest = self._graph.digest if self.manifest.sparse else b""
        return survivors_transcript(self.sid, survivors, digest)

    def _sign(self, request: ConsistencyCheckRequest) -> ConsistencySignature:
        stage, survivors = Stage.CONSISTENCY_CHECK, request.survivors
        if len(set(survivors)) != len(survivors) or not all(map(self.manifest.is_member, survivors)):
            raise self._abort(stage, f"survivor list {survivors} repeats a party or names a non-member")
        near = set(survivors) & self._circle  # the survivors this party can check: its neighbourhood
        if not near <= set(self._u2):
            raise self._abort(stage, f"survivor list {survivors} is not a subset of U2 {self._u2}")
        if survivors != self._order(survivors):
            raise self._abort(stage, "survivor list is not in manifest order")
        if self.party_id not in survivors:
            raise self._abort(stage, "survivor list omits this party although it sent its masked input")
        self._require_global_quorum(stage, len(survivors), "survivors")
        self._require_quorum(stage, len(near), "survivors")
        self._u3 = survivors
        signature = self._identity.sign(self._transcript(survivors))
        return ConsistencySignature(self.sid, stage.value, self.party_id, signature)

    def _check_unmask_request(self, request: UnmaskRequest) -> None:
        stage = Stage.UNMASK
        both = set(request.reveal_seed_for) & set(request.reveal_key_for)
        if both:
            raise self._abort(stage, f"coordinator asks for both share kinds of party {sorted(both)[0]}")
        if request.survivors != self._u3:
            raise self._abort(stage, "survivor list differs from the one this party signed")
        survived, dropped = self._reveal_subjects()
        if sorted(request.reveal_seed_for) != sorted(survived):
            raise self._abort(
                stage, f"seed shares asked for {request.reveal_seed_for}, survivors are {survived}"
            )
        if sorted(request.reveal_key_for) != sorted(dropped):
            raise self._abort(
                stage, f"key shares asked for {request.reveal_key_for}, dropped are {list(dropped)}"
            )
        signers: set[str] = set()
        transcript = self._transcript(self._u3)
        for item in request.signatures:
            who = item.sender
            if who not in self._u3 or who in signers:
                raise self._abort(stage, f"unexpected or repeated signature from party {who!r}")
            header_ok = item.sid == self.sid and item.stage == Stage.CONSISTENCY_CHECK.value
            if not header_ok or not signature_valid(
                self.manifest.identity_key(who), item.signature, transcript
            ):
                raise self._abort(stage, f"signature of party {who} on the survivor list does not verify")
            signers.add(who)
        self._require_global_quorum(stage, len(signers), "valid signatures on the survivor list")

    def _reveal_subjects(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Whose shares this party holds, split into survivors (seed shares) and dropped (key shares)."""
        held = set(self._u2)
        return self._order(held & set(self._u3)), self._order(held - set(self._u3))

    def _unmask(self, request: UnmaskRequest, removal: Removal | None) -> UnmaskResponse:
        self._check_unmask_request(request)
        survived, dropped = self._reveal_subjects()
        claims = {u: ShareKind.SEED for u in survived} | {u: ShareKind.KEY for u in dropped}
        conflicts = self._record.claim(self.sid, claims)
        if conflicts:
            who, kind = sorted(conflicts.items())[0]
            raise self._abort(Stage.UNMASK, f"already revealed the {kind.value} share of party {who}")
        seed_shares = tuple(RevealedShare(u, sm.encode_share(self._held[u][0])) for u in survived)
        key_shares = tuple(RevealedShare(u, sm.encode_share(self._held[u][1])) for u in dropped)
        removed = removal(self._u3) if removal is not None else None
        noise = b"" if removed is None else sm.vector_to_bytes(sm.encode_int64(removed))
        return UnmaskResponse(self.sid, Stage.UNMASK.value, self.party_id, seed_shares, key_shares, noise)

    # ------------------------------------------------------------ test support

    def private_seed_for_tests(self) -> bytes:
        """This party's self-mask seed b_u (tests use it to show a straggler stays hidden)."""
        return self._seed
