"""Ed25519 identity keys and detached plan approvals.

Each member holds an Ed25519 identity key (separate from its TLS key); the plan lists the public half as
base64 of the raw 32 bytes. Approving a plan signs a domain-separated message that binds the member id to the
plan's hash (SHA-256 of the file's exact bytes), so any change to the plan, even one byte, voids every
approval. Signatures live next to the plan as `<plan file>.<member>.sig` (a small JSON document).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cleanroom.errors import InvalidInput, NotFound, PermissionDenied
from cleanroom.plan import Member, Plan
from cleanroom.private_files import write_private

APPROVAL_CONTEXT = b"cleanroom/plan-approval/v1"
SIGNATURE_FORMAT = "cleanroom-plan-approval-v1"


def generate_identity() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def save_private_key(key: Ed25519PrivateKey, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write the key as unencrypted PKCS#8 PEM, created with mode 0600 (never world- or group-readable)."""
    path = Path(path)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        return write_private(path, pem, overwrite=overwrite)  # a fresh 0600 file moved into place
    except FileExistsError:
        raise InvalidInput(f"identity key {path} already exists (refusing to overwrite)") from None


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    path = Path(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise NotFound(f"identity key {path} does not exist") from None
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"identity key {path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput(f"identity key {path} is not an Ed25519 key")
    return key


def public_key_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """Base64 of the raw 32-byte public key: the `identity_key` value in a plan."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def approval_message(plan_hash: str, member_id: str) -> bytes:
    """What a member signs: context, member id and plan hash, NUL-separated (ids cannot contain NUL)."""
    return b"\0".join((APPROVAL_CONTEXT, member_id.encode("utf-8"), plan_hash.encode("ascii")))


def signature_path(plan_path: str | Path, member_id: str) -> Path:
    plan_path = Path(plan_path)
    return plan_path.with_name(f"{plan_path.name}.{member_id}.sig")


def approve(plan_path: str | Path, key: Ed25519PrivateKey, member_id: str | None = None) -> Path:
    """Validate the plan, sign its hash as the member owning `key`, write `<plan>.<member>.sig`; return it."""
    plan = Plan.load(plan_path)
    member = _member_for_key(plan, key, member_id)
    signature = key.sign(approval_message(plan.hash, member.id))
    document = {
        "format": SIGNATURE_FORMAT,
        "member": member.id,
        "plan_hash": plan.hash,
        "signature": base64.b64encode(signature).decode("ascii"),
    }
    out = signature_path(plan_path, member.id)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    return out


def _member_for_key(plan: Plan, key: Ed25519PrivateKey, member_id: str | None) -> Member:
    mine = public_key_b64(key)
    if member_id is not None:
        member = plan.member(member_id)
        if member.identity_key != mine:
            raise PermissionDenied(f"{plan.source}: key {mine} is not member {member_id!r}'s identity_key")
        return member
    owners = [m for m in plan.members if m.identity_key == mine]
    if len(owners) != 1:
        raise PermissionDenied(f"{plan.source}: key {mine} is the identity_key of {len(owners)} members")
    return owners[0]


def verify_approval(plan: Plan, member_id: str, sig_path: str | Path) -> None:
    """Raise PermissionDenied unless `sig_path` is `member_id`'s valid signature over this exact plan."""
    sig_path = Path(sig_path)
    where = f"approval {sig_path} for plan {plan.hash}"
    public = plan.member(member_id).public_key()
    document = _read_signature(sig_path)
    if document.get("member") != member_id:
        raise PermissionDenied(f"{where}: signed as {document.get('member')!r}, expected {member_id!r}")
    if document.get("plan_hash") != plan.hash:
        raise PermissionDenied(
            f"{where}: signs a different plan {document.get('plan_hash')} (plan changed; approve again)"
        )
    try:
        signature = base64.b64decode(str(document.get("signature", "")), validate=True)
        public.verify(signature, approval_message(plan.hash, member_id))
    except (InvalidSignature, binascii.Error, ValueError):
        raise PermissionDenied(f"{where}: signature does not verify with {member_id!r}'s key") from None


def _read_signature(sig_path: Path) -> dict[str, object]:
    try:
        document = json.loads(sig_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFound(f"approval {sig_path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise PermissionDenied(f"approval {sig_path} is not a readable signature file: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != SIGNATURE_FORMAT:
        raise PermissionDenied(f"approval {sig_path} is not a {SIGNATURE_FORMAT} document")
    return document


@dataclass(frozen=True)
class PlanApprovals:
    """Which data parties have validly approved a plan; build with `PlanApprovals.collect(plan)`."""

    plan_hash: str
    approved: frozenset[str]
    missing: frozenset[str]
    invalid: dict[str, str] = field(default_factory=dict, hash=False)

    @classmethod
    def collect(cls, plan: Plan, plan_path: str | Path | None = None) -> PlanApprovals:
        """Check `<plan_path>.<member>.sig` for every data party (plan_path defaults to plan.source)."""
        base = Path(plan_path) if plan_path is not None else Path(plan.source)
        approved: set[str] = set()
        missing: set[str] = set()
        invalid: dict[str, str] = {}
        for member in plan.data_parties:
            try:
                verify_approval(plan, member.id, signature_path(base, member.id))
                approved.add(member.id)
            except NotFound:
                missing.add(member.id)
            except PermissionDenied as exc:
                invalid[member.id] = str(exc)
        return cls(plan.hash, frozenset(approved), frozenset(missing), invalid)

    @property
    def complete(self) -> bool:
        return not self.missing and not self.invalid

    def require_all(self) -> None:
        """Raise PermissionDenied naming the plan hash and every data party without a valid approval."""
        if self.complete:
            return
        problems = [f"{m}: no approval" for m in sorted(self.missing)]
        problems += [f"{m}: {reason}" for m, reason in sorted(self.invalid.items())]
        raise PermissionDenied(f"plan {self.plan_hash} lacks approvals: " + "; ".join(problems))
