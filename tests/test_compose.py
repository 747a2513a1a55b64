"""docker-compose.yml (Docker cannot run here): services, commands matching the CLI, mounts, health."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cleanroom_cli.main import build_parser

yaml = pytest.importorskip("yaml")
REPO = Path(__file__).resolve().parents[1]
PARTIES = ("airline", "hotel", "bank")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"])


def test_one_coordinator_and_three_parties(services: dict[str, Any]) -> None:
    assert set(services) == {"coordinator", *PARTIES}


def test_commands_parse_with_the_cli(services: dict[str, Any]) -> None:
    parser = build_parser()
    for name, service in services.items():
        args = parser.parse_args(service["command"])
        expected = "coordinator" if name == "coordinator" else "party"
        assert args.command == expected, name
        if name != "coordinator":
            assert args.action == "serve"
        for probe in service.get("healthcheck", {}).get("test", [])[2:3]:
            assert probe == "health"


def test_each_party_mounts_only_its_own_data_and_keys(services: dict[str, Any]) -> None:
    for party in PARTIES:
        mounts = [v.split(":")[0] for v in services[party]["volumes"]]
        for other in set(PARTIES) - {party}:
            assert not any(f"/{other}/" in m for m in mounts), f"{party} mounts {other}'s files"
        assert any(m.endswith(f"{party}/keys") for m in mounts)
        assert any(m.endswith(f"{party}/data") for m in mounts)
        ro = [v for v in services[party]["volumes"] if "/keys" in v or "/data" in v]
        assert all(v.endswith(":ro") for v in ro), ro


def test_parties_have_grpc_health_checks_the_cli_accepts(services: dict[str, Any]) -> None:
    parser = build_parser()
    for party in PARTIES:
        test = services[party]["healthcheck"]["test"]
        assert test[:2] == ["CMD", "cleanroom"]
        args = parser.parse_args(test[2:])
        assert args.command == "health" and args.id == party
        assert args.service == "transport.v1.PartyService"
        assert args.cert.endswith(f"{party}.pem")


def test_coordinator_waits_for_healthy_parties(services: dict[str, Any]) -> None:
    depends = services["coordinator"]["depends_on"]
    assert {p: depends[p]["condition"] for p in PARTIES} == dict.fromkeys(PARTIES, "service_healthy")


def test_dockerfile_entrypoint_is_the_cli() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["cleanroom"]' in text
    assert "USER " in text


def test_setup_script_output_matches_every_mount(tmp_path: Path, services: dict[str, Any]) -> None:
    import tomllib

    from cleanroom.plan import Plan
    from cleanroom_cli.compose import prepare_compose

    deploy = tmp_path / "deploy"
    plan_path = prepare_compose(deploy, rows_per_party=50)
    for name, service in services.items():
        for volume in service["volumes"]:
            host, container = volume.split(":")[:2]
            assert host.startswith("./deploy/"), volume
            assert (tmp_path / host).exists(), f"{name}: {host} missing after setup"
        if name == "coordinator":
            continue
        config = tomllib.loads((deploy / name / "party.toml").read_text())
        keys = deploy / name / "keys"
        for key in ("ca", "cert", "key", "identity_key"):
            assert config["tls"][key].startswith("/keys/")
            assert (keys / Path(config["tls"][key]).name).is_file()
        assert (deploy / name / "data" / Path(config["data"]["source"]).name).is_file()
        plan = Plan.load(plan_path)
        assert config["approved_plans"] == [plan.hash]
        assert plan.member(name).address == f"{name}:50051"
