"""The `cleanroom` command line: certificates, exit statuses and clear errors for bad configuration."""

from __future__ import annotations

import hashlib
import re
import socket
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cleanroom.sample_data import demo_dataset
from cleanroom_cli.main import main
from transport.ca import identity_of


def test_ca_init_and_issue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    certs = tmp_path / "certs"
    assert main(["ca", "init", "--dir", str(certs)]) == 0
    assert main(["ca", "issue", "hotel", "--dir", str(certs), "--dns", "hotel.example.org"]) == 0
    out = capsys.readouterr().out
    cert = x509.load_pem_x509_certificate((certs / "hotel.pem").read_bytes())
    printed = re.search(r'cert_sha256 = "([0-9a-f]{64})"', out)
    assert printed is not None
    assert printed.group(1) == hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert identity_of(cert) == ("party", "hotel")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "hotel.example.org" in san.get_values_for_type(x509.DNSName)
    ca = x509.load_pem_x509_certificate((certs / "ca.pem").read_bytes())
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    assert (certs / "hotel.key").stat().st_mode & 0o077 == 0


def test_ca_init_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ca", "init", "--dir", str(tmp_path)]) == 0
    assert main(["ca", "init", "--dir", str(tmp_path)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err


def test_issue_without_ca_names_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ca", "issue", "x", "--dir", str(tmp_path)]) == 2
    assert "cleanroom ca init" in capsys.readouterr().err


def test_party_serve_with_missing_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["party", "serve", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml" in capsys.readouterr().err


def test_party_config_missing_key_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "party.toml"
    config.write_text('party_id = "a"\nlisten = "127.0.0.1:1"\n')
    assert main(["party", "serve", "--config", str(config)]) == 2
    assert "missing key 'tls'" in capsys.readouterr().err


def test_coordinator_without_coordinator_table_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "collaboration.toml"
    config.write_text('collaboration_id = "x"\n')
    assert main(["coordinator", "run", "--config", str(config)]) == 2
    assert "[coordinator]" in capsys.readouterr().err


def test_health_of_an_unreachable_node_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["ca", "init", "--dir", str(tmp_path)])
    main(["ca", "issue", "a", "--dir", str(tmp_path)])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["health", "--address", f"127.0.0.1:{port}", "--id", "a", "--timeout", "1"]
    args += [
        "--ca",
        str(tmp_path / "ca.pem"),
        "--cert",
        str(tmp_path / "a.pem"),
        "--key",
        str(tmp_path / "a.key"),
    ]
    assert main(args) == 1
    assert "UNREACHABLE" in capsys.readouterr().out


def test_simulate_rejects_malformed_party_argument(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text("{}")
    args = ["simulate", "--schema", str(schema), "--party", "nofile", "--target", "y", "--task", "regression"]
    assert main([*args, "--epsilon", "1", "--out", str(tmp_path / "o")]) == 2
    assert "NAME=PATH" in capsys.readouterr().err


def test_schema_infer_prints_the_domain_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cleanroom.schema import Schema
    from cleanroom.schema_infer import DOMAIN_WARNING

    _, frame, target, _ = demo_dataset(200, seed=1)
    frame.to_csv(tmp_path / "data.csv", index=False)
    out = tmp_path / "schema.json"
    assert main(["schema", "infer", str(tmp_path / "data.csv"), "--target", target, "--out", str(out)]) == 0
    assert DOMAIN_WARNING in capsys.readouterr().err
    assert Schema.load(out).target == target


def test_plan_approve_show_and_audit_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cleanroom.audit import AuditLog
    from cleanroom_cli import local

    schema, frame, target, task = demo_dataset(60, seed=2)
    job = local.LocalJob(tmp_path, schema, {"a": frame[:30], "b": frame[30:]}, target, task, 1.0, 1e-9, 0)
    local.prepare(job)
    plan = job.work / "collaboration.toml"
    assert main(["plan", "approve", str(plan), "--key", str(job.work / "certs" / "a.ed25519")]) == 0
    assert (job.work / "collaboration.toml.a.sig").is_file()
    assert main(["plan", "show", str(plan)]) == 0
    assert hashlib.sha256(plan.read_bytes()).hexdigest() in capsys.readouterr().out
    log = tmp_path / "audit.jsonl"
    AuditLog(log).append("measure", "answered", job_id="j")
    assert main(["audit", "verify", str(log)]) == 0
    log.write_text(log.read_text().replace("answered", "refused"))
    assert main(["audit", "verify", str(log)]) == 1
    assert "BROKEN" in capsys.readouterr().out


def test_coordinator_refuses_a_plan_a_party_has_not_signed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cleanroom_cli import local

    schema, frame, target, task = demo_dataset(60, seed=3)
    job = local.LocalJob(tmp_path, schema, {"a": frame[:30], "b": frame[30:]}, target, task, 1.0, 1e-9, 0)
    local.prepare(job)
    plan = job.work / "collaboration.toml"
    (job.work / "collaboration.toml.b.sig").unlink()
    assert main(["coordinator", "run", "--config", str(plan)]) == 3
    err = capsys.readouterr().err
    assert "lacks approvals" in err and "b: no approval" in err
    events = (job.work / "coordinator" / "job-log.jsonl").read_text()
    assert '"outcome": "error' in events and "handshake" not in events
