"""Collaboration plan: loading, hashing, validation messages and ability queries."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from governance_fixtures import write_plan

from cleanroom.errors import InvalidInput, NotFound, PermissionDenied
from cleanroom.plan import Plan, require_approved_hash


def test_valid_plan_loads_with_fields_and_hash(tmp_path: Path) -> None:
    files = write_plan(tmp_path, n_parties=3)
    plan = Plan.load(files.path)
    assert plan.hash == hashlib.sha256(files.path.read_bytes()).hexdigest()
    assert [m.id for m in plan.data_parties] == ["p0", "p1", "p2"]
    assert [m.id for m in plan.members] == ["p0", "p1", "p2", "analyst", "coordinator"]
    assert plan.effective_threshold == 2
    assert plan.n_min == 3 - 1 - 0
    assert plan.epsilon == 1.0 and plan.delta == 1e-9 and plan.result_formats == ("csv",)
    assert plan.schema_path == tmp_path / "schema.json"
    assert plan.coordinator == "coordinator"


def test_one_byte_change_changes_hash(tmp_path: Path) -> None:
    files = write_plan(tmp_path)
    before = Plan.load(files.path).hash
    files.path.write_bytes(files.path.read_bytes() + b"\n")
    assert Plan.load(files.path).hash != before


def test_abilities(tmp_path: Path) -> None:
    plan = Plan.load(write_plan(tmp_path).path)
    assert plan.can("p0", "receive_results")
    assert not plan.can("p1", "receive_results")
    assert plan.can("p1", "run_jobs")
    assert not plan.can("analyst", "run_jobs")
    assert not plan.can("stranger", "run_jobs")
    assert [m.id for m in plan.members_with("receive_model")] == ["p0", "analyst"]
    plan.require("p1", "run_jobs")
    with pytest.raises(PermissionDenied, match=rf"'analyst' lacks ability 'run_jobs' in plan {plan.hash}"):
        plan.require("analyst", "run_jobs")
    with pytest.raises(InvalidInput, match="unknown ability"):
        plan.can("p0", "fly")
    assert [m.id for m in plan.recipients("model")] == ["p0", "analyst"]
    assert [m.id for m in plan.recipients("synthetic_data")] == ["p0"]
    assert [m.id for m in plan.recipients("report")] == ["p0", "analyst"]
    with pytest.raises(InvalidInput, match="unknown output kind"):
        plan.recipients("secrets")
    text = plan.describe()
    assert plan.hash in text and "member analyst at (no node): receive_model, receive_results" in text
    assert f"noise {plan.noise_layout.shares} draws per party; a survivor list of all" in text


def test_coordinator_and_member_lookup(tmp_path: Path) -> None:
    plan = Plan.load(write_plan(tmp_path).path)
    plan.require_coordinator("coordinator")
    with pytest.raises(PermissionDenied, match="'mallory' is not the coordinator"):
        plan.require_coordinator("mallory")
    assert plan.member("p2").address == "127.0.0.1:50053"
    with pytest.raises(NotFound, match="no member 'zed'"):
        plan.member("zed")
    p1 = plan.member("p1")
    assert plan.member_by_cert(p1.cert_sha256.upper()) == p1
    with pytest.raises(PermissionDenied, match="belongs to no member"):
        plan.member_by_cert("0" * 64)


def test_approved_hash_gate(tmp_path: Path) -> None:
    plan = Plan.load(write_plan(tmp_path).path)
    require_approved_hash(plan.hash, ["a" * 64, plan.hash.upper()])
    with pytest.raises(PermissionDenied, match=f"plan {plan.hash} is not approved by this party"):
        require_approved_hash(plan.hash, ["a" * 64])


def test_coordinator_table_keeps_settings(tmp_path: Path) -> None:
    files = write_plan(tmp_path, overrides={"coordinator": ""})
    files.path.write_text(files.path.read_text() + '\n[coordinator]\nid = "coordinator"\nworkdir = "w"\n')
    plan = Plan.load(files.path)
    assert plan.coordinator == "coordinator"
    assert plan.sections["coordinator"]["workdir"] == "w"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"threshold": "1"}, r"threshold \(1\) must be > n/2 = 1.5"),
        ({"threshold": "4"}, r"threshold \(4\) must be > n/2 = 1.5 and <= n = 3"),
        ({"threshold": "3"}, r"threshold \(3\) must be <= data parties - dropout_tolerance = 2"),
        ({"min_parties": "3"}, r"min_parties \(3\) must be <= data parties - dropout_tolerance = 3 - 1 = 2"),
        ({"min_parties": "0"}, r"min_parties \(0\) must be >= 1"),
        ({"colluders": "2", "min_parties": "1"}, r"colluders \(2\) must be >= 1"),
        ({"epsilon": "0"}, r"epsilon \(0.0\) must be > 0"),
        ({"epsilon": "-1", "max_epsilon_per_job": "0.1"}, r"epsilon \(-1.0\) must be > 0"),
        ({"delta": "1.0"}, r"delta \(1.0\) must be in \(0, 1\)"),
        ({"delta": "0"}, r"delta \(0.0\) must be in \(0, 1\)"),
        ({"max_epsilon_per_job": "2.0"}, r"max_epsilon_per_job \(2.0\) must be in \(0, epsilon=1.0\]"),
        ({"max_membership_inference_score": "0.4"}, r"inference_score \(0.4\) must be in \[0.5, 1\]"),
        ({"max_membership_inference_score": "1.1"}, r"max_membership_inference_score \(1.1\) must be in"),
        ({"result_formats": '["csv", "xlsx"]'}, r"result_formats \['xlsx'\] unknown"),
        ({"result_formats": "[]"}, r"result_formats must list at least one"),
        ({"model_format": '"skops"'}, r"model_format \('skops'\) must be one of \['onnx'\]"),
        ({"task": '"clustering"'}, r"task \('clustering'\) must be one of"),
        ({"synthesizer": '"gan"'}, r"synthesizer \('gan'\) must be one of"),
        ({"retention_days": "0"}, r"retention_days \(0\) must be >= 1"),
        ({"synthetic_rows": "-5"}, r"synthetic_rows \(-5\) must be >= 0"),
        ({"epsilon": '"one"'}, r"epsilon \('one'\) must be of type float"),
        ({"min_parties": "true"}, r"min_parties \(True\) must be of type int"),
        ({"target": ""}, r"missing required fields \['target'\]"),
        ({"schema_hash": '"abc"'}, r"schema_hash \('abc'\) must be 64 lowercase hex"),
        ({"schema_hash": '"' + "0" * 64 + '"'}, r"schema_hash \(0{64}\) does not match the hash of"),
        ({"schema": '"nope.json"'}, r"schema file .*nope.json does not exist"),
        ({"surprise": "1"}, r"unknown field 'surprise'"),
    ],
)
def test_validation_errors_name_file_and_field(
    tmp_path: Path, overrides: dict[str, str], message: str
) -> None:
    files = write_plan(tmp_path, overrides=overrides)
    with pytest.raises((InvalidInput, NotFound), match=message) as info:
        Plan.load(files.path)
    assert str(files.path) in str(info.value)


@pytest.mark.parametrize(
    ("member_toml", "message"),
    [
        ('[[members]]\nid = "p0"\n', r"member ids \['p0'\] are not unique"),
        (f'[[members]]\nid = "x"\ncert_sha256 = "{hashlib.sha256(b"p1").hexdigest()}"\n', r"cert_sha256s \["),
        ('[[members]]\nid = "x"\nabilities = ["run_jobs", "fly"]\n', r"unknown abilities \['fly'\]"),
        ('[[members]]\nid = "x"\naddress = "h:1"\n', r"a data party .* needs cert_sha256 and"),
        ('[[members]]\nid = "x"\ncert_sha256 = "xyz"\n', r"member 'x': cert_sha256 \('xyz'\) must be 64"),
        ('[[members]]\nid = "x"\nidentity_key = "AAAA"\n', r"member 'x': identity_key must be 32 raw bytes"),
        ('[[members]]\nid = "x"\nidentity_key = "@@"\n', r"member 'x': identity_key is not valid base64"),
        ('[[members]]\nid = "a/b"\n', r"member id \('a/b'\) must be a non-empty name"),
        ('[[members]]\nid = "x"\nrole = "boss"\n', r"members\[5\]: unknown fields \['role'\]"),
        ('[[members]]\naddress = "h:1"\n', r"members\[5\]: missing id"),
    ],
)
def test_member_validation(tmp_path: Path, member_toml: str, message: str) -> None:
    files = write_plan(tmp_path, extra_members="\n" + member_toml)
    with pytest.raises(InvalidInput, match=message) as info:
        Plan.load(files.path)
    assert str(files.path) in str(info.value)


def test_no_data_party_and_bad_toml(tmp_path: Path) -> None:
    files = write_plan(tmp_path, n_parties=0, overrides={"min_parties": "1", "dropout_tolerance": "0"})
    with pytest.raises(InvalidInput, match="at least one member needs an address"):
        Plan.load(files.path)
    files.path.write_text("epsilon = = 1\n")
    with pytest.raises(InvalidInput, match="not a valid UTF-8 TOML file"):
        Plan.load(files.path)
    with pytest.raises(NotFound, match="does not exist"):
        Plan.load(tmp_path / "missing.toml")


def test_defaults_and_explicit_threshold(tmp_path: Path) -> None:
    files = write_plan(
        tmp_path,
        n_parties=4,
        overrides={"threshold": "3", "max_epsilon_per_job": "", "dropout_tolerance": "1", "colluders": "1"},
    )
    plan = Plan.load(files.path)
    assert plan.effective_threshold == 3
    assert plan.max_epsilon_per_job == plan.epsilon
    assert plan.n_min == 2


def test_parse_without_schema_check(tmp_path: Path) -> None:
    files = write_plan(tmp_path, overrides={"schema": '"elsewhere.json"'})
    plan = Plan.parse(files.path.read_bytes(), files.path, check_schema=False)
    assert plan.schema_path.name == "elsewhere.json"


def test_shared_identity_key_rejected(tmp_path: Path) -> None:
    files = write_plan(tmp_path)
    text = files.path.read_text()
    key_line = next(line for line in text.splitlines() if line.startswith("identity_key"))
    files.path.write_text(text + f'\n[[members]]\nid = "twin"\n{key_line}\n')
    with pytest.raises(InvalidInput, match="member identity_keys .* are not unique"):
        Plan.load(files.path)


def test_default_threshold_grows_with_declared_colluders(tmp_path: Path) -> None:
    files = write_plan(
        tmp_path,
        n_parties=5,
        overrides={"threshold": "0", "dropout_tolerance": "1", "colluders": "1", "min_parties": "2"},
    )
    assert Plan.load(files.path).effective_threshold == 4  # t > (5 + 1)/2


def test_explicit_threshold_too_small_for_colluders_is_refused(tmp_path: Path) -> None:
    files = write_plan(
        tmp_path,
        n_parties=5,
        overrides={"threshold": "3", "dropout_tolerance": "1", "colluders": "1", "min_parties": "2"},
    )
    with pytest.raises(InvalidInput, match=r"threshold \(3\) must be >= 4 to tolerate 1 colluders"):
        Plan.load(files.path)


def test_rounds_need_every_party_but_the_tolerated_dropouts(tmp_path: Path) -> None:
    files = write_plan(tmp_path, n_parties=4, overrides={"dropout_tolerance": "1", "min_parties": "2"})
    plan = Plan.load(files.path)
    assert plan.min_survivors == 3
    assert plan.n_min == 3 - plan.colluders
