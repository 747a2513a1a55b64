"""Wire messages of secure aggregation: frozen dataclasses of bytes/int/str/tuple fields only.

The gRPC serde maps each class 1:1 to a protobuf message (tuples of nested dataclasses -> repeated fields).
Every top-level message carries the session id, its stage name and its sender id; requests come from the
coordinator, responses from a party. Structural checks happen here; protocol checks (signatures, membership,
survivor lists) happen in `party` and `server`.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any, ClassVar

from cleanroom.errors import InvalidInput

SID_BYTES = 32


class Stage(enum.Enum):
    """The five protocol stages, in order."""

    ADVERTISE_KEYS = "AdvertiseKeys"
    SHARE_KEYS = "ShareKeys"
    MASKED_INPUT = "MaskedInput"
    CONSISTENCY_CHECK = "ConsistencyCheck"
    UNMASK = "Unmask"


STAGE_ORDER: tuple[Stage, ...] = tuple(Stage)


def _check_types(message: Any) -> None:
    for field in dataclasses.fields(message):
        value = getattr(message, field.name)
        expected = {"bytes": bytes, "str": str, "int": int}.get(str(field.type))
        if expected is not None and not isinstance(value, expected):
            raise InvalidInput(
                f"{type(message).__name__}.{field.name} must be {field.type}, got {type(value)}"
            )
        if str(field.type).startswith("tuple") and not isinstance(value, tuple):
            raise InvalidInput(f"{type(message).__name__}.{field.name} must be a tuple, got {type(value)}")


@dataclass(frozen=True)
class StageMessage:
    """Common header: session id, stage name and sender id."""

    STAGE: ClassVar[Stage]

    sid: bytes
    stage: str
    sender: str

    def __post_init__(self) -> None:
        _check_types(self)
        if len(self.sid) != SID_BYTES:
            raise InvalidInput(f"{type(self).__name__}.sid must be {SID_BYTES} bytes, got {len(self.sid)}")
        if self.stage not in {s.value for s in Stage}:
            raise InvalidInput(f"{type(self).__name__}.stage ({self.stage!r}) is not a protocol stage")
        if not self.sender:
            raise InvalidInput(f"{type(self).__name__}.sender must not be empty")


@dataclass(frozen=True)
class AdvertiseKeysRequest(StageMessage):
    STAGE = Stage.ADVERTISE_KEYS


@dataclass(frozen=True)
class AdvertiseKeys(StageMessage):
    """A party's fresh X25519 public keys (encryption, masking), signed with its identity key."""

    STAGE = Stage.ADVERTISE_KEYS
    enc_public: bytes
    mask_public: bytes
    signature: bytes


@dataclass(frozen=True)
class ShareKeysRequest(StageMessage):
    """The coordinator's roster: every advert it received (U1)."""

    STAGE = Stage.SHARE_KEYS
    adverts: tuple[AdvertiseKeys, ...]


@dataclass(frozen=True)
class EncryptedShares:
    """Shares of `sender`'s self-mask seed and masking key for `recipient`, AEAD-sealed (sid in the AD)."""

    sender: str
    recipient: str
    ciphertext: bytes

    def __post_init__(self) -> None:
        _check_types(self)


@dataclass(frozen=True)
class ShareKeys(StageMessage):
    STAGE = Stage.SHARE_KEYS
    shares: tuple[EncryptedShares, ...]


@dataclass(frozen=True)
class MaskedInputRequest(StageMessage):
    """The ciphertexts addressed to the recipient party by every other party of U2."""

    STAGE = Stage.MASKED_INPUT
    shares: tuple[EncryptedShares, ...]


@dataclass(frozen=True)
class MaskedInput(StageMessage):
    """y_u as little-endian uint64 bytes."""

    STAGE = Stage.MASKED_INPUT
    vector: bytes


@dataclass(frozen=True)
class ConsistencyCheckRequest(StageMessage):
    """The survivor list U3 (parties whose masked input arrived), in manifest order."""

    STAGE = Stage.CONSISTENCY_CHECK
    survivors: tuple[str, ...]


@dataclass(frozen=True)
class ConsistencySignature(StageMessage):
    """The sender's Ed25519 signature over (sid, survivor list)."""

    STAGE = Stage.CONSISTENCY_CHECK
    signature: bytes


@dataclass(frozen=True)
class UnmaskRequest(StageMessage):
    """Survivor list, the signatures on it, and which share kind to reveal for which party."""

    STAGE = Stage.UNMASK
    survivors: tuple[str, ...]
    signatures: tuple[ConsistencySignature, ...]
    reveal_seed_for: tuple[str, ...]
    reveal_key_for: tuple[str, ...]


@dataclass(frozen=True)
class RevealedShare:
    """One encoded Shamir share of `subject`'s seed or masking key."""

    subject: str
    share: bytes

    def __post_init__(self) -> None:
        _check_types(self)


@dataclass(frozen=True)
class UnmaskResponse(StageMessage):
    """The shares asked for, and the noise draws the signed survivor list lets the sender take back out of
    its masked input (int64 vector bytes; empty if none: `cleanroom.accounting.NoiseLayout`)."""

    STAGE = Stage.UNMASK
    seed_shares: tuple[RevealedShare, ...]
    key_shares: tuple[RevealedShare, ...]
    removed_noise: bytes = b""


def message_size(message: Any) -> int:
    """Approximate wire size in bytes: payload bytes/strings plus 8 per int and 2 per field of framing."""
    if isinstance(message, bytes):
        return len(message)
    if isinstance(message, str):
        return len(message.encode("utf-8"))
    if isinstance(message, int):
        return 8
    if isinstance(message, tuple):
        return sum(message_size(item) + 2 for item in message)
    return sum(message_size(getattr(message, f.name)) + 2 for f in dataclasses.fields(message))
