"""The compose files and the folders the setup script writes for them (tests/integration/test_containers.py
runs them): services, commands the CLI accepts, mounts, secrets, volumes, health checks."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest

from cleanroom.identity import signature_path, verify_approval
from cleanroom.plan import Plan
from cleanroom_cli.compose import SampleJob, prepare_compose, prepare_partners
from cleanroom_cli.main import _health_target, build_parser, main
from party.config import PartyConfig

yaml = pytest.importorskip("yaml")
REPO = Path(__file__).resolve().parents[1]
PARTIES = ("airline", "hotel", "bank")
SECRET_TARGETS = {"ca.pem", "node.pem", "node.key", "node.ed25519"}


def _compose(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


@pytest.fixture(scope="module")
def pilot() -> dict[str, Any]:
    return _compose(REPO / "docker-compose.yml")


@pytest.fixture(scope="module")
def party_service() -> dict[str, Any]:
    return dict(_compose(REPO / "compose" / "party.yml")["services"]["party"])


@pytest.fixture(scope="module")
def coordinator_service() -> dict[str, Any]:
    return dict(_compose(REPO / "compose" / "coordinator.yml")["services"]["coordinator"])


def _check_command(service: dict[str, Any], command: str) -> None:
    args = build_parser().parse_args(service["command"])
    assert args.command == command
    assert args.action == {"party": "serve", "coordinator": "run"}[command]


def _check_health(service: dict[str, Any]) -> None:
    test = service["healthcheck"]["test"]
    assert test[:2] == ["CMD", "cleanroom"]
    args = build_parser().parse_args(test[2:])
    assert args.command == "health" and args.config == "/config/party.toml"
    assert args.service == "transport.v1.PartyService"


def _hardened(service: dict[str, Any]) -> None:
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert service["init"] is True


def test_pilot_has_one_coordinator_and_three_parties(pilot: dict[str, Any]) -> None:
    assert set(pilot["services"]) == {"coordinator", *PARTIES}
    for name, service in pilot["services"].items():
        _check_command(service, "coordinator" if name == "coordinator" else "party")
        _hardened(service)


def test_pilot_parties_mount_only_their_own_files(pilot: dict[str, Any]) -> None:
    for party in PARTIES:
        service = pilot["services"][party]
        binds = [v for v in service["volumes"] if v.startswith("./")]
        for other in set(PARTIES) - {party}:
            assert not any(f"/{other}" in v for v in binds), f"{party} mounts {other}'s files"
        assert f"./deploy/{party}/data:/data:ro" in binds
        assert all(v.endswith(":ro") for v in binds), binds
        assert {v for v in service["volumes"] if not v.startswith("./")} == {
            f"{party}-state:/state",
            f"{party}-results:/results",
        }
        secrets = {s["source"]: s["target"] for s in service["secrets"]}
        assert set(secrets.values()) == SECRET_TARGETS
        assert all(pilot["secrets"][s]["file"].startswith(f"./deploy/{party}/keys/") for s in secrets)
        _check_health(service)


def test_pilot_coordinator_waits_for_healthy_parties(pilot: dict[str, Any]) -> None:
    depends = pilot["services"]["coordinator"]["depends_on"]
    assert {p: depends[p]["condition"] for p in PARTIES} == dict.fromkeys(PARTIES, "service_healthy")


def test_dockerfile_is_multi_stage_non_root_with_a_grpc_health_check() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["cleanroom"]' in text
    assert re.search(r"^USER 10001", text, re.M)
    assert len(re.findall(r"^FROM ", text, re.M)) == 2
    assert "COPY --from=builder /opt/cleanroom /opt/cleanroom" in text
    health = re.search(r"^HEALTHCHECK .*?CMD (\[.*?\])", text, re.M | re.S)
    assert health is not None
    args = build_parser().parse_args(yaml.safe_load(health.group(1))[1:])
    assert args.command == "health" and args.config == "/config/party.toml"


def test_pilot_setup_writes_every_mount_and_secret(tmp_path: Path, pilot: dict[str, Any]) -> None:
    deploy = tmp_path / "deploy"
    plan_path = prepare_compose(deploy, rows_per_party=50)
    for name, service in pilot["services"].items():
        for volume in service["volumes"]:
            host = volume.split(":")[0]
            if host.startswith("./"):
                assert (tmp_path / host).exists(), f"{name}: {host} missing after setup"
            else:
                assert host in pilot["volumes"], f"{name}: {host} is not a named volume"
    for secret in pilot["secrets"].values():
        assert (tmp_path / secret["file"]).is_file(), secret
    plan = Plan.load(plan_path)
    for party in PARTIES:
        config = tomllib.loads((deploy / party / "party.toml").read_text())
        assert config["approved_plans"] == [plan.hash]
        assert plan.member(party).address == f"{party}:50051"
        assert config["data"]["source"] == f"/data/{party}.csv"


def test_party_compose_is_one_hardened_node_on_the_host_network(party_service: dict[str, Any]) -> None:
    _check_command(party_service, "party")
    _check_health(party_service)
    _hardened(party_service)
    assert party_service["network_mode"] == "host"
    volumes = party_service["volumes"]
    assert [v.rsplit(":", 2)[1:] for v in volumes[:2]] == [["/config", "ro"], ["/data", "ro"]]
    assert volumes[2:] == ["state:/state", "results:/results"]
    assert {s["target"] for s in party_service["secrets"]} == SECRET_TARGETS


def test_coordinator_compose_runs_the_job_with_its_secrets(coordinator_service: dict[str, Any]) -> None:
    _check_command(coordinator_service, "coordinator")
    _hardened(coordinator_service)
    assert coordinator_service["network_mode"] == "host"
    assert coordinator_service["healthcheck"] == {"disable": True}
    assert coordinator_service["volumes"][1] == "out:/out"
    assert {s["target"] for s in coordinator_service["secrets"]} == {"ca.pem", "node.pem", "node.key"}


def _compose_variables(path: Path) -> set[str]:
    return set(re.findall(r"\$\{(CLEANROOM_[A-Z_]+)", path.read_text()))


@pytest.fixture(scope="module")
def partners(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("partners")
    prepare_partners(out, {"airline": 50061, "hotel": 50062, "bank": 50063}, job=SampleJob(rows_per_party=40))
    return out


def _env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def test_partner_folders_fill_every_compose_variable(partners: Path) -> None:
    optional = {"CLEANROOM_RESTART", "CLEANROOM_HEALTH_INTERVAL", "CLEANROOM_IMAGE"}
    for party in PARTIES:
        env = _env(partners / party / "party.env")
        assert _compose_variables(REPO / "compose" / "party.yml") - optional <= set(env)
        assert all(Path(env[k]).exists() for k in env if k.endswith(("_DIR", "_CA", "_CERT", "_KEY")))
        assert env["CLEANROOM_TLS_KEY"].endswith(f"{party}/secrets/{party}.key")
    env = _env(partners / "coordinator" / "coordinator.env")
    assert _compose_variables(REPO / "compose" / "coordinator.yml") - optional <= set(env)


def test_partner_plan_is_approved_by_every_party_and_pins_their_ports(partners: Path) -> None:
    plan_path = partners / "coordinator" / "config" / "collaboration.toml"
    plan = Plan.load(plan_path)
    for i, party in enumerate(PARTIES):
        verify_approval(plan, party, signature_path(plan_path, party))
        assert plan.member(party).address == f"127.0.0.1:{50061 + i}"
        copy = partners / party / "config" / "collaboration.toml"
        assert copy.read_bytes() == plan_path.read_bytes()
        assert not (partners / party / "config" / "ca.key").exists()


def _as_container_sees_it(partners: Path, party: str, root: Path) -> Path:
    """Copy a party's folder to `root` as its container would see it: /config, /data, /run/secrets."""
    for sub in ("config", "data"):
        shutil.copytree(partners / party / sub, root / sub)
    secrets = root / "run" / "secrets"
    secrets.mkdir(parents=True)
    for target, name in (("ca.pem", "ca.pem"), ("node.pem", f"{party}.pem"), ("node.key", f"{party}.key")):
        shutil.copyfile(partners / party / "secrets" / name, secrets / target)
    shutil.copyfile(partners / party / "secrets" / f"{party}.ed25519", secrets / "node.ed25519")
    config = root / "config" / "party.toml"
    text = config.read_text().replace('"/run/secrets/', f'"{secrets}/').replace('"/data/', f'"{root}/data/')
    config.write_text(text.replace('"/state/', f'"{root}/state/').replace('"/results"', f'"{root}/results"'))
    return config


def test_health_reads_address_id_and_keys_from_party_toml(partners: Path, tmp_path: Path) -> None:
    config_path = _as_container_sees_it(partners, "hotel", tmp_path)
    config = PartyConfig.load(config_path)
    args = build_parser().parse_args(["health", "--config", str(config_path)])
    address, node_id, tls = _health_target(args)
    assert (address, node_id, tls) == ("127.0.0.1:50062", "hotel", config.tls)
    wildcard = config_path.read_text().replace('listen = "127.0.0.1:', 'listen = "0.0.0.0:')
    config_path.write_text(wildcard)
    assert _health_target(args)[0] == "127.0.0.1:50062"


def test_health_with_config_reports_a_stopped_node(
    partners: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _as_container_sees_it(partners, "bank", tmp_path)
    assert main(["health", "--config", str(config), "--timeout", "2"]) == 1
    assert capsys.readouterr().out.startswith("UNREACHABLE")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["health", "--id", "x"], "health needs --config or all of --address"),
        (["health", "--config", "p.toml", "--id", "x"], "health takes --config or --id, not both"),
    ],
)
def test_health_needs_config_or_every_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
