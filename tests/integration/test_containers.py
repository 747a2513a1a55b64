"""The container deployment for real: build the image with scripts/build_image.sh, start three party
containers from compose/party.yml and a coordinator container from compose/coordinator.yml, run a job on the
built-in sample data over loopback (host networking, one port per party), check every party's results and
audit log on its own volumes, then remove every container, network, volume and image tag the test made.

Skips when Docker is unavailable (no daemon, no compose, or the base image is missing and cannot be made
here); with CI=true it fails instead. CLEANROOM_CONTAINER_ROWS sets the rows per party (default 2000).
The base image (cleanroom-base:*) is kept: it is the build cache, made once per machine.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cleanroom_cli.compose import CONTAINER_UID, SampleJob, chown_secrets, prepare_partners
from cleanroom_cli.local import free_port

pytestmark = pytest.mark.docker
REPO = Path(__file__).resolve().parents[2]
PARTIES = ("airline", "hotel", "bank")
ROWS = int(os.environ.get("CLEANROOM_CONTAINER_ROWS", "2000"))


def _run(
    *argv: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def _compose_command() -> list[str] | None:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but the container test cannot run: {reason}")
    pytest.skip(reason)


def _base_image() -> str:
    text = (REPO / "Dockerfile").read_text()
    return text.split("ARG BASE=", 1)[1].split()[0]


@pytest.fixture
def compose() -> list[str]:
    if shutil.which("docker") is None:
        _unavailable("docker is not installed")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        _unavailable("the Docker daemon is not reachable")
    command = _compose_command()
    if command is None:
        _unavailable("neither `docker compose` nor docker-compose is installed")
    base_ready = (
        subprocess.run(["docker", "image", "inspect", _base_image()], capture_output=True).returncode == 0
    )
    if not base_ready and (os.geteuid() != 0 or shutil.which("debootstrap") is None):
        _unavailable(f"the base image {_base_image()} is missing and making it needs root and debootstrap")
    assert command is not None
    return command


@dataclass
class Deployment:
    """What one test run starts: a compose project per node, all under one run id."""

    compose: list[str]
    root: Path
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))

    @property
    def image(self) -> str:
        return f"cleanroom:test-{self.run_id}"

    def project(self, node: str) -> str:
        return f"crtest{self.run_id}-{node}"

    def compose_run(self, node: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        kind = "coordinator" if node == "coordinator" else "party"
        env_file = self.root / node / f"{kind}.env"
        file = REPO / "compose" / f"{kind}.yml"
        base = [*self.compose, "--env-file", str(env_file), "-p", self.project(node), "-f", str(file)]
        return _run(*base, *argv, check=check)

    def inspect_volume(self, node: str, volumes: dict[str, str], script: str) -> str:
        """Run `script` with the image's Python, as its user, with the node's named volumes read-only."""
        mounts = [f"--volume={self.project(node)}_{name}:{target}:ro" for name, target in volumes.items()]
        argv = ["docker", "run", "--rm", "--network=none", f"--label=cleanroom.test={self.run_id}", *mounts]
        return _run(*argv, "--entrypoint", "/opt/cleanroom/bin/python", self.image, "-c", script).stdout


def _build(deployment: Deployment) -> None:
    started = time.monotonic()
    env = {**os.environ, "PYTHON": sys.executable}
    done = _run("bash", str(REPO / "scripts" / "build_image.sh"), deployment.image, env=env)
    print(done.stdout.strip())
    print(f"[containers] build_image.sh took {time.monotonic() - started:.1f} s")


def _prepare(deployment: Deployment) -> dict[str, int]:
    ports = {pid: free_port() for pid in PARTIES}
    job = SampleJob(rows_per_party=ROWS, epsilon=1.0)
    prepare_partners(deployment.root, ports, job=job, image=deployment.image, health_interval="5s")
    for pid in PARTIES:
        with (deployment.root / pid / "party.env").open("a") as env:
            env.write("CLEANROOM_RESTART=no\n")
    _give_secrets_to_image_user(deployment)
    return ports


def _give_secrets_to_image_user(deployment: Deployment) -> None:
    """The key files stay 0600; the image's user must own them (as a partner would `chown 10001`)."""
    folders = [deployment.root / node / "secrets" for node in (*PARTIES, "coordinator")]
    if os.geteuid() == 0:
        for folder in folders:
            chown_secrets(folder)
        return
    mounts = [f"--volume={folder}:/k{i}" for i, folder in enumerate(folders)]
    script = f"chown {CONTAINER_UID}:{CONTAINER_UID} " + " ".join(f"/k{i}/*" for i in range(len(folders)))
    label = f"--label=cleanroom.test={deployment.run_id}"
    _run(
        "docker",
        "run",
        "--rm",
        "--user=0",
        label,
        *mounts,
        "--entrypoint=/bin/sh",
        deployment.image,
        "-c",
        script,
    )


def _wait_healthy(deployment: Deployment, pid: str) -> None:
    """Until Docker's health check (the image's HEALTHCHECK over mutual TLS) says healthy; a node that
    exits or turns unhealthy fails the test at once."""
    container = deployment.compose_run(pid, "ps", "-q", "party").stdout.strip()
    assert container, f"no container for {pid}"
    while True:
        state = json.loads(_run("docker", "inspect", "--format", "{{json .State}}", container).stdout)
        health = state.get("Health", {}).get("Status")
        if health == "healthy":
            return
        if state["Status"] != "running" or health == "unhealthy":
            logs = _run("docker", "logs", container, check=False)
            raise AssertionError(f"{pid}: {state['Status']}, health {health}\n{logs.stdout}\n{logs.stderr}")
        time.sleep(0.5)


def _start_parties(deployment: Deployment) -> float:
    started = time.monotonic()
    with ThreadPoolExecutor(len(PARTIES)) as pool:  # each partner starts its own node, independently
        list(pool.map(lambda pid: deployment.compose_run(pid, "up", "-d"), PARTIES))
    for pid in PARTIES:
        _wait_healthy(deployment, pid)
    elapsed = time.monotonic() - started
    print(f"[containers] {len(PARTIES)} party containers started and healthy in {elapsed:.1f} s")
    return elapsed


def _run_job(deployment: Deployment) -> dict[str, object]:
    started = time.monotonic()
    done = deployment.compose_run("coordinator", "run", "--rm", "-T", "coordinator", check=False)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, f"coordinator exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    print(f"[containers] coordinator container ran the job in {elapsed:.1f} s:")
    print("\n".join(line for line in done.stdout.splitlines() if "[coordinator]" in line))
    script = "import json, pathlib; print(pathlib.Path('/out/job.json').read_text())"
    record: dict[str, object] = json.loads(deployment.inspect_volume("coordinator", {"out": "/out"}, script))
    assert record["delivered"] and not record["undelivered"], record
    return record


_DIGESTS = """
import hashlib, json, os, pathlib, subprocess, sys
def digests(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")}
"""
# Inside a container with a party's volumes: their owner and mode, each result file's SHA-256, and the
# audit log's verification as `cleanroom audit verify` reports it.
_PARTY_CHECK = (
    _DIGESTS
    + """
command = ["cleanroom", "audit", "verify", "/state/audit.jsonl"]
verify = subprocess.run(command, capture_output=True, text=True)
print(json.dumps({
    "volumes": {d: [os.stat(d).st_uid, oct(os.stat(d).st_mode & 0o777)] for d in ("/state", "/results")},
    "results": digests(pathlib.Path("/results")),
    "stamp": json.loads(pathlib.Path("/results/.delivered.json").read_text()),
    "released": json.loads(pathlib.Path("/results/report.json").read_text()).get("released"),
    "audit": [verify.returncode, verify.stdout.strip() + verify.stderr.strip()],
}))
"""
)
_COORDINATOR_CHECK = _DIGESTS + 'print(json.dumps(digests(pathlib.Path("/out/results"))))'


def _check_parties(deployment: Deployment, job_id: str) -> None:
    """Each party's volumes (owned by the image's user, mode 0700) hold this job's results, the files
    the coordinator delivered, and an audit log that `cleanroom audit verify` accepts."""
    delivered = json.loads(deployment.inspect_volume("coordinator", {"out": "/out"}, _COORDINATOR_CHECK))
    assert {"synthetic.csv", "model.onnx", "report.json"} <= set(delivered), delivered
    for pid in PARTIES:
        volumes = {"state": "/state", "results": "/results"}
        found = json.loads(deployment.inspect_volume(pid, volumes, _PARTY_CHECK))
        assert found["volumes"] == {"/state": [CONTAINER_UID, "0o700"], "/results": [CONTAINER_UID, "0o700"]}
        results = found["results"]
        assert set(results) == {"synthetic.csv", "model.onnx", "report.json", "report.html"}, (
            f"{pid}: {results}"
        )
        for name in ("synthetic.csv", "model.onnx"):  # report.json: the party adds its own sections
            assert results[name] == delivered[name], f"{pid}: {name} differs from what was delivered"
        assert found["stamp"]["job_id"] == job_id and found["released"] is True, found
        code, report = found["audit"]
        assert code == 0 and ": OK, " in report, f"{pid}: {report}"
        files = ", ".join(sorted(results))
        print(f"[containers] {pid}: results of job {job_id} on its volume ({files}); {report}")


def _remove_everything(deployment: Deployment) -> list[str]:
    """Stop and remove every project (containers, networks, volumes) and the image tag; returns leftovers."""
    for node in (*PARTIES, "coordinator"):
        deployment.compose_run(node, "down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)
    _run("docker", "image", "rm", deployment.image, check=False)
    leftovers = []
    for node in (*PARTIES, "coordinator"):
        label = f"label=com.docker.compose.project={deployment.project(node)}"
        for kind in ("container", "volume", "network"):
            every = ["--all"] if kind == "container" else []
            found = _run("docker", kind, "ls", "-q", *every, "--filter", label)
            leftovers += [f"{kind} {name}" for name in found.stdout.split()]
    helpers = _run(
        "docker", "container", "ls", "-aq", "--filter", f"label=cleanroom.test={deployment.run_id}"
    )
    leftovers += [f"container {name}" for name in helpers.stdout.split()]
    if _run("docker", "image", "inspect", deployment.image, check=False).returncode == 0:
        leftovers.append(f"image {deployment.image}")
    return leftovers


def test_compose_deployment_runs_a_job_in_containers(compose: list[str], tmp_path: Path) -> None:
    deployment = Deployment(compose, tmp_path / "deploy")
    try:
        _build(deployment)
        ports = _prepare(deployment)
        print(f"[containers] run {deployment.run_id}: parties on 127.0.0.1 ports {ports}, {ROWS} rows each")
        started = time.monotonic()
        _start_parties(deployment)
        record = _run_job(deployment)
        print(f"[containers] end to end (start parties, run the job): {time.monotonic() - started:.1f} s")
        _check_parties(deployment, str(record["job_id"]))
    finally:
        leftovers = _remove_everything(deployment)
    assert leftovers == [], f"left behind: {leftovers}"
    print(f"[containers] removed every container, network, volume and the image tag {deployment.image}")
