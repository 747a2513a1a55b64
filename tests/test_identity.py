"""Identity keys and plan approvals: signatures bind the exact plan bytes and the member's key."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from governance_fixtures import write_plan

from cleanroom.errors import InvalidInput, NotFound, PermissionDenied
from cleanroom.identity import (
    PlanApprovals,
    approve,
    generate_identity,
    load_private_key,
    public_key_b64,
    save_private_key,
    signature_path,
    verify_approval,
)
from cleanroom.plan import Plan


def test_key_roundtrip_and_private_mode(tmp_path: Path) -> None:
    key = generate_identity()
    path = save_private_key(key, tmp_path / "party.key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert public_key_b64(load_private_key(path)) == public_key_b64(key)
    assert public_key_b64(key) == public_key_b64(key.public_key())
    with pytest.raises(InvalidInput, match="already exists"):
        save_private_key(generate_identity(), path)
    other = generate_identity()
    save_private_key(other, path, overwrite=True)
    assert public_key_b64(load_private_key(path)) == public_key_b64(other)


def test_load_rejects_bad_files(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        load_private_key(tmp_path / "none.key")
    (tmp_path / "junk.key").write_text("not a key")
    with pytest.raises(InvalidInput, match="junk.key is not an unencrypted PEM"):
        load_private_key(tmp_path / "junk.key")


def test_approve_writes_verifiable_detached_signature(tmp_path: Path) -> None:
    files = write_plan(tmp_path)
    sig = approve(files.path, files.keys["p1"])
    assert sig == tmp_path / "plan.toml.p1.sig"
    plan = Plan.load(files.path)
    verify_approval(plan, "p1", sig)
    assert json.loads(sig.read_text())["plan_hash"] == plan.hash


def test_one_byte_change_invalidates_approvals(tmp_path: Path) -> None:
    files = write_plan(tmp_path)
    for key in files.keys.values():
        approve(files.path, key)
    assert PlanApprovals.collect(Plan.load(files.path)).complete
    files.path.write_bytes(files.path.read_bytes().replace(b"epsilon = 1.0", b"epsilon = 1.1"))
    changed = Plan.load(files.path)
    with pytest.raises(PermissionDenied, match="signs a different plan"):
        verify_approval(changed, "p0", signature_path(files.path, "p0"))
    approvals = PlanApprovals.collect(changed)
    assert not approvals.complete and set(approvals.invalid) == {"p0", "p1", "p2"}
    with pytest.raises(PermissionDenied, match=f"plan {changed.hash} lacks approvals: p0: "):
        approvals.require_all()


def test_forged_hash_field_still_fails_signature(tmp_path: Path) -> None:
    files = write_plan(tmp_path)
    sig = approve(files.path, files.keys["p0"])
    files.path.write_bytes(files.path.read_bytes() + b"# tweak\n")
    changed = Plan.load(files.path)
    document = json.loads(sig.read_text())
    document["plan_hash"] = changed.hash
    sig.write_text(json.dumps(document))
    with pytest.raises(PermissionDenied, match="signature does not verify"):
        verify_approval(changed, "p0", sig)


def test_wrong_key_rejected(tmp_path: Path) -> None:
    files = write_plan(tmp_path)
    outsider = Ed25519PrivateKey.generate()
    with pytest.raises(PermissionDenied, match="is the identity_key of 0 members"):
        approve(files.path, outsider)
    with pytest.raises(PermissionDenied, match="is not member 'p1'"):
        approve(files.path, files.keys["p0"], member_id="p1")
    # p0 signs, then the file is renamed to claim to be p1's approval
    sig = approve(files.path, files.keys["p0"])
    plan = Plan.load(files.path)
    with pytest.raises(PermissionDenied, match="signed as 'p0', expected 'p1'"):
        verify_approval(plan, "p1", sig)
    document = json.loads(sig.read_text())
    document["member"] = "p1"
    target = signature_path(files.path, "p1")
    target.write_text(json.dumps(document))
    with pytest.raises(PermissionDenied, match="signature does not verify with 'p1'"):
        verify_approval(plan, "p1", target)


def test_missing_and_partial_approvals(tmp_path: Path) -> None:
    files = write_plan(tmp_path)
    approve(files.path, files.keys["p0"])
    approve(files.path, files.keys["p2"])
    approvals = PlanApprovals.collect(Plan.load(files.path))
    assert approvals.approved == {"p0", "p2"} and approvals.missing == {"p1"} and not approvals.invalid
    with pytest.raises(PermissionDenied, match="p1: no approval"):
        approvals.require_all()
    signature_path(files.path, "p1").write_text("{garbage")
    approvals = PlanApprovals.collect(Plan.load(files.path))
    assert "p1" in approvals.invalid and "not a readable signature file" in approvals.invalid["p1"]
