"""`cleanroom demo` and `cleanroom simulate`: a whole collaboration on this machine, one OS process per node.

Writes a working directory (`<out>/_work`: CA and node certificates, per-party data, party.toml files, the
plan `collaboration.toml`, ledgers, logs), starts every party node as its own process, waits for their gRPC
health to be SERVING, runs the coordinator as another process, then prints per-stage timings and, per
party, the bytes it uploaded against the size of the marginal tables it contributed. Each party's results
land in `<out>/<party>/`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cleanroom.errors import InvalidInput, PreconditionFailed
from cleanroom.identity import approve, load_private_key
from cleanroom.ledger import Ledger
from cleanroom.sample_data import demo_dataset
from cleanroom.schema import Schema
from cleanroom_cli.local_sources import describe_sources, parse_sources, source_entry, write_party_data
from transport import ca
from transport.channel import wait_healthy
from transport.tls import TlsFiles

REPO = Path(__file__).resolve().parents[1]
ALL_ABILITIES = ["run_jobs", "receive_results", "receive_synthetic_data", "receive_model", "read_audit_log"]


@dataclass
class LocalJob:
    """Everything needed to run one local collaboration."""

    out: Path
    schema: dict[str, Any]
    parts: dict[str, pd.DataFrame | Path]
    target: str
    task: str
    epsilon: float
    delta: float
    synthetic_rows: int
    result_format: str = "csv"
    seed: int | None = None
    receivers: list[str] | None = None  # None = every party receives results
    jobs: int = 1  # the plan's total budget allows this many jobs of `epsilon` each
    max_membership_inference_score: float = 0.8  # the release gate (issue 6)
    masking_neighbours: int = 0  # the plan's secure-aggregation graph degree; 0 = automatic
    party_schemas: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # tests: a party with another schema
    sources: dict[str, str] = field(default_factory=dict)  # party -> csv/parquet/postgresql (default csv)
    profile_dir: Path | None = None  # benchmarks: run every process under cProfile, stats written here
    hosts: dict[str, str] = field(default_factory=dict)  # benchmarks: party -> address to serve on
    wrappers: dict[str, list[str]] = field(default_factory=dict)  # benchmarks: process -> command prefix
    work: Path = field(init=False)
    stats: dict[str, ProcessStats] = field(init=False, default_factory=dict)  # filled by run_local
    pids: dict[str, int] = field(init=False, default_factory=dict)  # process ids, as run_local starts them
    times: dict[str, float] = field(init=False, default_factory=dict)  # filled by run_local

    def __post_init__(self) -> None:
        if len(self.parts) < 2:
            raise InvalidInput(f"a collaboration needs at least 2 parties, got {len(self.parts)}")
        self.work = self.out / "_work"


@dataclass(frozen=True)
class ProcessStats:
    """One finished process: wall seconds it ran, CPU seconds (user + system) and peak resident memory."""

    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    pss_mib: float = math.nan  # proportional set size when the job ended (forked parties share pages)


def _reap(proc: subprocess.Popen[bytes], started: float) -> ProcessStats:
    """Wait for `proc` with wait4, so its own rusage (CPU, peak RSS) is read, not the sum of all children."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    return ProcessStats(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))


def toml_table(values: dict[str, Any]) -> str:
    return "".join(f"{k} = {toml_value(v)}\n" for k, v in values.items())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(job: LocalJob) -> dict[str, Path]:
    """Write certificates, data, plan and configs; returns party id -> party.toml path."""
    work = job.work
    if work.exists():
        shutil.rmtree(work)  # a previous local run's CA, ledgers and configs: always start fresh
    work.mkdir(parents=True)
    certs = work / "certs"
    if not (certs / "ca.pem").exists():
        ca.init_ca(certs)
    coord_files = ca.issue(certs, "coordinator", role="coordinator")
    schema_path = work / "schema.json"
    schema_path.write_text(json.dumps(job.schema, indent=2))
    schema_hash = Schema.load(schema_path).hash()
    members: list[dict[str, Any]] = []
    configs: dict[str, Path] = {}
    for pid, frame in job.parts.items():
        files = ca.issue(certs, pid, role="party")
        write_party_data(work / "data", pid, frame, job.sources.get(pid, "csv"))
        entitled = job.receivers is None or pid in job.receivers
        abilities = ALL_ABILITIES if entitled else ["run_jobs"]
        members.append(
            {
                "id": pid,
                "address": f"{job.hosts.get(pid, '127.0.0.1')}:{free_port()}",
                "cert_sha256": files.cert_sha256,
                "identity_key": files.identity_public_b64,
                "abilities": abilities,
            }
        )
    members.append(
        {
            "id": "coordinator",
            "cert_sha256": coord_files.cert_sha256,
            "identity_key": coord_files.identity_public_b64,
            "abilities": ["run_jobs"],
        }
    )
    plan_path = write_plan(job, schema_hash, members)
    plan_hash = hashlib.sha256(plan_path.read_bytes()).hexdigest()
    for pid in job.parts:  # each party signs the plan with its identity key (cleanroom plan approve)
        approve(plan_path, load_private_key(certs / f"{pid}.ed25519"), pid)
    for member in members[:-1]:
        configs[member["id"]] = write_party_config(job, member, plan_hash)
    return configs


def write_plan(job: LocalJob, schema_hash: str, members: list[dict[str, Any]]) -> Path:
    n = len(job.parts)
    head = {
        "collaboration_id": f"local-{job.out.name}",
        "schema": "schema.json",
        "schema_hash": schema_hash,
        "target": job.target,
        "task": job.task,
        "synthesizer": "mst",
        "synthetic_rows": job.synthetic_rows,
        "epsilon": job.epsilon * job.jobs,
        "delta": job.delta,
        "max_epsilon_per_job": job.epsilon,
        "min_parties": max(2, n - 1),
        "dropout_tolerance": 1 if n >= 3 else 0,
        "colluders": 0,
        "threshold": 0,
        "max_membership_inference_score": job.max_membership_inference_score,
        "result_formats": [job.result_format],
        "model_format": "onnx",
        "retention_days": 30,
    }
    if job.masking_neighbours:
        head["masking_neighbours"] = job.masking_neighbours
    text = toml_table(head)
    for member in members:
        text += "\n[[members]]\n" + toml_table(member)
    coordinator = {
        "id": "coordinator",
        "ca": "certs/ca.pem",
        "cert": "certs/coordinator.pem",
        "key": "certs/coordinator.key",
        "out": "coordinator",
        "call_deadline_s": 120.0,
        "job_log": "coordinator/job-log.jsonl",
    }
    if job.seed is not None:
        coordinator["seed"] = job.seed
    text += "\n[coordinator]\n" + toml_table(coordinator)
    path = job.work / "collaboration.toml"
    path.write_text(text)
    return path


def write_party_config(job: LocalJob, member: dict[str, Any], plan_hash: str) -> Path:
    pid = member["id"]
    text = toml_table(
        {
            "party_id": pid,
            "listen": member["address"],
            "plan": "collaboration.toml",
            "approved_plans": [plan_hash],
            "output_dir": str((job.out / pid).resolve()),
        }
    )
    text += "\n[tls]\n" + toml_table(
        {
            "ca": "certs/ca.pem",
            "cert": f"certs/{pid}.pem",
            "key": f"certs/{pid}.key",
            "identity_key": f"certs/{pid}.ed25519",
        }
    )
    schema_file = "schema.json"
    if pid in job.party_schemas:
        schema_file = f"schema-{pid}.json"
        (job.work / schema_file).write_text(json.dumps(job.party_schemas[pid], indent=2))
    text += "\n[data]\n" + toml_table(
        {"schema": schema_file, "source": source_entry(pid, job.sources.get(pid, "csv"))}
    )
    text += "\n[budget]\n" + toml_table(
        {
            "epsilon": max(10.0, 10 * job.epsilon),
            "delta": job.delta,
            "ledger": f"state/{pid}.sqlite",
            "audit_log": f"state/{pid}-audit.jsonl",
        }
    )
    (job.work / "state").mkdir(exist_ok=True)
    path = job.work / f"{pid}.toml"
    path.write_text(text)
    return path


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _command(job: LocalJob, name: str, *args: str) -> list[str]:
    """`python -m cleanroom_cli.main ARGS`, under cProfile when the job is profiled, after the process's
    wrapper (e.g. `ip netns exec NS` in the WAN benchmark)."""
    profile: list[str] = []
    if job.profile_dir is not None:
        job.profile_dir.mkdir(parents=True, exist_ok=True)
        profile = ["-m", "cProfile", "-o", str(job.profile_dir / f"{name}.prof")]
    return [*job.wrappers.get(name, []), sys.executable, *profile, "-m", "cleanroom_cli.main", *args]


def forked_launch(job: LocalJob) -> bool:
    """Fork parties from the preloaded forkserver (party_launcher), unless profiling or told to exec."""
    exec_launch = job.profile_dir is not None or job.wrappers
    return not exec_launch and os.environ.get("CLEANROOM_LOCAL_LAUNCH", "fork") != "exec"


def start_parties(job: LocalJob, configs: dict[str, Path]) -> dict[str, Any]:
    """One process per party: `subprocess.Popen` objects, or `party_launcher.ForkedParty` (same interface)."""
    (job.work / "logs").mkdir(exist_ok=True)
    procs: dict[str, Any] = {}
    for pid, config in configs.items():
        argv = ["-v", "party", "serve", "--config", str(config)]
        if forked_launch(job):
            from cleanroom_cli.party_launcher import ForkedParty

            procs[pid] = ForkedParty(argv, job.work / "logs" / f"{pid}.log", job.work)
            continue
        log = (job.work / "logs" / f"{pid}.log").open("wb")
        procs[pid] = subprocess.Popen(
            _command(job, pid, *argv), stdout=log, stderr=subprocess.STDOUT, env=_env(), cwd=job.work
        )
    return procs


async def _wait_all(job: LocalJob, configs: dict[str, Path], procs: dict[str, Any]) -> None:
    import tomllib

    tls = TlsFiles(
        job.work / "certs/ca.pem", job.work / "certs/coordinator.pem", job.work / "certs/coordinator.key"
    )
    for pid, config in configs.items():
        address = tomllib.loads(config.read_text())["listen"]
        for _ in range(300):
            if procs[pid].poll() is not None:
                raise party_start_error(job, pid, procs[pid].returncode)
            try:
                await wait_healthy(address, tls, pid, "transport.v1.PartyService", attempts=5)
                break
            except TimeoutError:
                continue
        else:
            raise PreconditionFailed(f"party {pid} at {address} never became healthy")


def party_start_error(job: LocalJob, pid: str, status: int) -> Exception:
    """Exit status 2 is the party refusing its own input (its one-line reason); anything else is a crash."""
    log = (job.work / "logs" / f"{pid}.log").read_text(errors="replace")
    if status == 2:
        reason = log.strip().splitlines()[-1].removeprefix("cleanroom: error: ") if log.strip() else ""
        return InvalidInput(f"party {pid} refused to start, nothing was spent: {reason}")
    return PreconditionFailed(f"party {pid} exited with status {status}:\n{log[-2000:]}")


def stop(procs: dict[str, Any], started: float = math.nan) -> dict[str, ProcessStats]:
    """SIGTERM every party process and reap it; returns the figures of each one that exited in time
    (`started`: when the processes were launched, for their wall time). A forked party's figures are read
    from /proc just before the signal (it is not this process's child, so wait4 cannot report them)."""
    sampled = {pid: proc.usage() for pid, proc in procs.items() if hasattr(proc, "usage")}
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    stats = {}
    deadline = time.monotonic() + 15 + 0.2 * len(procs)
    for pid, proc in procs.items():
        if pid in sampled:
            _wait_forked(proc, deadline)
            if sampled[pid] is not None and proc.returncode is not None:
                cpu, peak, pss = sampled[pid]
                stats[pid] = ProcessStats(time.perf_counter() - started, cpu, peak, pss)
            continue
        while proc.returncode is None and time.monotonic() < deadline:
            if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                stats[pid] = _reap(proc, started)
            else:
                time.sleep(0.02)
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    return stats


def _wait_forked(proc: Any, deadline: float) -> None:
    try:
        proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_local(job: LocalJob) -> int:
    """Run the collaboration; returns the coordinator's exit status (0 = results delivered)."""
    start = time.perf_counter()
    if forked_launch(job):
        from cleanroom_cli.party_launcher import forkserver

        forkserver()  # its imports run while the certificates and data are written
    configs = prepare(job)
    setup = time.perf_counter() - start
    procs = start_parties(job, configs)
    job.pids.update({pid: proc.pid for pid, proc in procs.items()})
    try:
        asyncio.run(_wait_all(job, configs, procs))
        ready = time.perf_counter() - start
        print(
            f"[local] {len(procs)} party processes serving (setup {setup:.2f} s, ready at {ready:.2f} s)",
            flush=True,
        )
        coordinator_start = time.perf_counter()
        coordinator = subprocess.Popen(
            _command(
                job, "coordinator", "coordinator", "run", "--config", str(job.work / "collaboration.toml")
            ),
            env=_env(),
            cwd=job.work,
        )
        job.pids["coordinator"] = coordinator.pid
        job.stats["coordinator"] = _reap(coordinator, coordinator_start)
        status = coordinator.returncode
        job.times = {
            "setup": setup,
            "parties_ready": ready - setup,
            "coordinator": job.stats["coordinator"].wall_s,
        }
    finally:
        job.stats.update(stop(procs, start + setup))
    total = time.perf_counter() - start
    if status != 0:
        print(
            f"[local] coordinator failed with status {status}; party logs in {job.work / 'logs'}",
            file=sys.stderr,
        )
        return status
    print_summary(job, total)
    return 0


def print_summary(job: LocalJob, total: float) -> None:
    record = json.loads((job.work / "coordinator" / "job.json").read_text())
    print("[local] per-stage timings:")
    for stage, seconds in record["timings_s"].items():
        print(f"  {stage:<14} {seconds:8.2f} s")
    table_bytes = int(record["table_bytes_per_party"])
    print(f"[local] per-party upload vs marginal tables ({table_bytes:,} B of int64 tables each):")
    for pid, up in record["uploads"].items():
        ratio = up["bytes_uploaded"] / table_bytes if table_bytes else float("nan")
        print(
            f"  {pid:<12} uploaded {up['bytes_uploaded']:>12,} B (masked vectors {up['vector_bytes']:,} B), "
            f"{ratio:.3f}x the tables"
        )
    print(f"[local] privacy spent: rho {record['rho_spent']:.5g}; results in {job.out}/<party>/")
    print(f"[local] coordinator job log: {job.work / 'coordinator' / 'job-log.jsonl'}")
    print_audit_summary(job)
    print_release(job)
    print(f"[local] wall time {total:.2f} s")


def audit_vs_ledger(job: LocalJob, pid: str) -> tuple[Path, float, float]:
    """A party's audit log path, the rho its answered entries charged, and the rho its ledger spent."""
    from cleanroom.audit import rho_charged_by_plan
    from party.config import PartyConfig
    from party.run import total_rho

    config = PartyConfig.load(job.work / f"{pid}.toml")
    assert config.audit_log is not None
    audited = sum(rho_charged_by_plan(config.audit_log).values())
    spent = float(Ledger(config.ledger, total_rho(config)).spent())
    return config.audit_log, audited, spent


def print_audit_summary(job: LocalJob) -> None:
    print("[local] party audit logs (`cleanroom audit show LOG`; rho charged per the log vs the ledger):")
    for pid in job.parts:
        path, audited, spent = audit_vs_ledger(job, pid)
        same = "matches" if math.isclose(audited, spent, rel_tol=1e-9, abs_tol=1e-12) else "DIFFERS from"
        print(f"  {pid:<12} {path}: audit rho {audited:.6g} {same} ledger rho {spent:.6g}")


def print_release(job: LocalJob) -> None:
    """The release decision and where each party's report is (report.html opens in any browser, offline)."""
    for pid in job.parts:
        path = job.out / pid / "report.json"
        if not path.is_file():
            print(f"[local] {pid}: no report delivered (not entitled to results)")
            continue
        release = json.loads(path.read_text()).get("release") or {}
        print(f"[local] {pid}: {release.get('reason', 'no evaluation')}; report {path.parent}/report.html")


def run_demo(args: argparse.Namespace) -> int:
    schema, frame, target, task = demo_dataset(args.rows * args.parties, seed=args.seed)
    parts = {
        f"party{i + 1}": frame.iloc[i :: args.parties].reset_index(drop=True) for i in range(args.parties)
    }
    job = LocalJob(
        Path(args.out).resolve(),
        schema,
        parts,
        target,
        task,
        args.epsilon,
        args.delta,
        synthetic_rows=args.rows * args.parties,
        result_format=args.format,
        seed=args.seed,
        max_membership_inference_score=args.max_membership_inference_score,
        sources=parse_sources(args.sources, list(parts)),
    )
    print(describe_sources(job.sources), flush=True)
    return run_local(job)


def run_simulate(args: argparse.Namespace) -> int:
    try:
        schema = json.loads(Path(args.schema).read_text(encoding="utf-8"))
    except OSError as error:
        raise InvalidInput(f"{args.schema}: cannot read schema file: {error.strerror or error}") from None
    except ValueError as error:  # a syntax error: one line naming the file, line and column (exit 2)
        raise InvalidInput(f"{args.schema}: not valid JSON: {error}") from None
    parts: dict[str, pd.DataFrame | Path] = {}
    for item in args.party:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InvalidInput(f"--party {item!r} must be NAME=PATH")
        if not Path(path).is_file():
            raise InvalidInput(f"--party {name}: file {path} does not exist")
        parts[name] = Path(path)
    job = LocalJob(
        Path(args.out).resolve(),
        schema,
        parts,
        args.target,
        args.task,
        args.epsilon,
        args.delta,
        synthetic_rows=args.rows,
        result_format=args.format,
        seed=args.seed,
        max_membership_inference_score=args.max_membership_inference_score,
        sources=parse_sources(args.sources, list(parts)),
    )
    print(describe_sources(job.sources), flush=True)
    return run_local(job)
