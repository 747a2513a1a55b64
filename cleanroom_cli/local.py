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

from cleanroom.errors import CleanroomError, InvalidInput, PreconditionFailed
from cleanroom.feasibility import MIN_PARTY_ROWS, MIN_SYNTHETIC_ROWS, Fields, check_job
from cleanroom.identity import approve, load_private_key
from cleanroom.ledger import Ledger
from cleanroom.sample_data import demo_dataset
from cleanroom.schema import Schema
from cleanroom_cli.local_sources import describe_sources, parse_sources, source_entry, write_party_data
from transport import ca
from transport.channel import wait_healthy
from transport.tls import TlsFiles

REPO = Path(__file__).resolve().parents[1]
INTERRUPTED = 130  # the exit status after Ctrl-C (128 + SIGINT)
LOCAL_FIELDS = Fields(
    schema="the schema", target="--target", task="--task", synthetic_rows="--synthetic-rows",
    epsilon="--epsilon", delta="--delta",
)  # fmt: skip
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
    fields: Fields = field(default_factory=lambda: LOCAL_FIELDS)  # how messages name the user's inputs
    start_window: int = 0  # parties starting at once (0: 2 per CPU, at least 4)
    progress_every_s: float = 2.0  # least time between two "started 20/60 parties" lines
    plan_fields: dict[str, Any] = field(default_factory=dict)  # extra top-level plan keys (vertical plans)
    plan_tables: str = ""  # extra plan tables, TOML text (e.g. [vertical])
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

    @property
    def dropout_tolerance(self) -> int:
        return 1 if len(self.parts) >= 3 else 0

    @property
    def n_min(self) -> int:
        return len(self.parts) - self.dropout_tolerance  # no colluders in a local run


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


def check_before_start(job: LocalJob) -> None:
    """Everything that can be checked before anything starts: the schema, the job against it (target, task,
    synthetic rows, the noise floor's epsilon cap) and every party's file. Nothing is written or spent."""
    fields = job.fields
    try:
        schema = Schema.from_dict(job.schema)
    except InvalidInput as error:
        raise InvalidInput(f"{fields.schema}: {error}") from None
    check_job(
        schema, target=job.target, task=job.task, epsilon=job.epsilon, delta=job.delta, n_min=job.n_min,
        n_parties=len(job.parts), synthetic_rows=job.synthetic_rows, fields=fields,
    )  # fmt: skip
    for pid, part in job.parts.items():
        rows = len(part) if isinstance(part, pd.DataFrame) else count_csv_rows(pid, part)
        if rows < MIN_PARTY_ROWS:
            where = f"--party {pid}: {part}" if isinstance(part, Path) else f"party {pid}"
            raise InvalidInput(
                f"{where} has {rows} rows; every party needs at least {MIN_PARTY_ROWS} (its membership "
                "holdout and the model's evaluation need them)"
            )


def count_csv_rows(pid: str, path: Path) -> int:
    """Data rows of a party's CSV file (the header excluded), read locally; one line on failure."""
    try:
        return len(pd.read_csv(path, usecols=[0], dtype=str, keep_default_na=False))
    except pd.errors.EmptyDataError:
        return 0
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InvalidInput(f"--party {pid}: {path} cannot be read as CSV: {reason}") from None


def user_file(job: LocalJob, pid: str) -> Path | None:
    part = job.parts.get(pid)
    return part.resolve() if isinstance(part, Path) else None


def in_user_terms(job: LocalJob, text: str) -> str:
    """A message from a node with the internal `_work/` copies replaced by the files the user gave."""
    for pid in job.parts:
        original = user_file(job, pid)
        if original is None:
            continue
        kind = job.sources.get(pid, "csv")
        copy = job.work / "data" / f"{pid}.{kind}"
        for name in (str(copy), f"data/{pid}.{kind}"):
            text = text.replace(name, f"{original} (its {kind} copy)")
    return text.replace(str(job.work / "schema.json"), job.fields.schema)


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
        if user_file(job, pid) is None or job.sources.get(pid, "csv") != "csv":
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
        "synthesizer": "adaptive",
        "synthetic_rows": job.synthetic_rows,
        "epsilon": job.epsilon * job.jobs,
        "delta": job.delta,
        "max_epsilon_per_job": job.epsilon,
        "min_parties": max(2, n - 1),
        "dropout_tolerance": job.dropout_tolerance,
        "colluders": 0,
        "threshold": 0,
        "max_membership_inference_score": job.max_membership_inference_score,
        "result_formats": [job.result_format],
        "model_format": "onnx",
        "retention_days": 30,
        **job.plan_fields,
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
    text += "\n[coordinator]\n" + toml_table(coordinator) + job.plan_tables
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
    kind, original = job.sources.get(pid, "csv"), user_file(job, pid)
    source = str(original) if original is not None and kind == "csv" else source_entry(pid, kind)
    text += "\n[data]\n" + toml_table({"schema": schema_file, "source": source})
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


def start_party(job: LocalJob, pid: str, config: Path) -> Any:
    """`cleanroom party serve` in its own session (a Ctrl-C reaches only this command, which stops it):
    a `subprocess.Popen`, or a `party_launcher.ForkedParty` (same interface) forked from the forkserver."""
    (job.work / "logs").mkdir(exist_ok=True)
    argv = ["-v", "party", "serve", "--config", str(config)]
    if forked_launch(job):
        from cleanroom_cli.party_launcher import ForkedParty

        party: Any = ForkedParty(argv, job.work / "logs" / f"{pid}.log", job.work)
    else:
        log = (job.work / "logs" / f"{pid}.log").open("wb")
        party = subprocess.Popen(
            _command(job, pid, *argv), stdout=log, stderr=subprocess.STDOUT, env=_env(), cwd=job.work,
            start_new_session=True,
        )  # fmt: skip
    job.pids[pid] = party.pid
    return party


def start_parties(job: LocalJob, configs: dict[str, Path]) -> dict[str, Any]:
    """Start every party node at once."""
    return {pid: start_party(job, pid, config) for pid, config in configs.items()}


def coordinator_tls(job: LocalJob) -> TlsFiles:
    certs = job.work / "certs"
    return TlsFiles(certs / "ca.pem", certs / "coordinator.pem", certs / "coordinator.key")


def listen_address(config: Path) -> str:
    import tomllib

    return str(tomllib.loads(config.read_text())["listen"])


async def party_healthy(job: LocalJob, pid: str, address: str, proc: Any, tls: TlsFiles) -> None:
    """Return once the party answers SERVING; its one-line refusal (or crash log) if it exits first."""
    for _ in range(300):
        if proc.poll() is not None:
            raise party_start_error(job, pid, proc.returncode)
        try:
            await wait_healthy(address, tls, pid, "transport.v1.PartyService", attempts=5)
            return
        except TimeoutError:
            continue
    raise PreconditionFailed(f"party {pid} at {address} never became healthy")


async def _wait_all(job: LocalJob, configs: dict[str, Path], procs: dict[str, Any]) -> None:
    tls = coordinator_tls(job)
    for pid, config in configs.items():
        await party_healthy(job, pid, listen_address(config), procs[pid], tls)


@dataclass
class StartProgress:
    """"started 20/60 parties, 12 healthy", when the counts changed, at most every `every` seconds, and once
    at the end."""

    total: int
    every: float
    started: int = 0
    healthy: int = 0
    shown: tuple[int, int] = (0, 0)
    last: float = 0.0

    def show(self, final: bool = False) -> None:
        now = time.monotonic()
        if (self.started, self.healthy) == self.shown or (not final and now - self.last < self.every):
            return
        print(f"[local] started {self.started}/{self.total} parties, {self.healthy} healthy", flush=True)
        self.shown, self.last = (self.started, self.healthy), now


async def start_and_wait(
    job: LocalJob, configs: dict[str, Path], procs: dict[str, Any]
) -> None:
    """Start the party nodes in waves (at most `window` starting at once, so their imports do not fight
    over the CPUs) into `procs`, and wait until every one is SERVING; big runs print progress."""
    window = job.start_window or max(4, 2 * (os.cpu_count() or 1))
    tls, pending = coordinator_tls(job), list(configs.items())
    progress = StartProgress(len(configs), job.progress_every_s) if len(configs) > window else None
    waiting: dict[str, asyncio.Task[None]] = {}
    try:
        while pending or waiting:
            while pending and len(waiting) < window:
                pid, config = pending.pop(0)
                procs[pid] = start_party(job, pid, config)
                waiting[pid] = asyncio.create_task(
                    party_healthy(job, pid, listen_address(config), procs[pid], tls)
                )
            await asyncio.wait(waiting.values(), timeout=2.0, return_when=asyncio.FIRST_COMPLETED)
            for pid in [p for p, task in waiting.items() if task.done()]:
                waiting.pop(pid).result()  # a party that refused to start stops the run here
                if progress is not None:
                    progress.healthy += 1
            if progress is not None:
                progress.started = len(procs)
                progress.show(final=not (pending or waiting))
    finally:
        for task in waiting.values():
            task.cancel()


def party_start_error(job: LocalJob, pid: str, status: int) -> Exception:
    """Exit status 2 is the party refusing its own input (its one-line reason); anything else is a crash."""
    log = in_user_terms(job, (job.work / "logs" / f"{pid}.log").read_text(errors="replace"))
    if status == 2:
        lines = [line for line in log.strip().splitlines() if line.startswith("cleanroom: error: ")]
        reason = lines[-1].removeprefix("cleanroom: error: ") if lines else log.strip()[-500:]
        return InvalidInput(f"party {pid} refused to start, nothing was spent: {reason}")
    return PreconditionFailed(f"party {pid} exited with status {status}:\n{log[-2000:]}")


def stop(
    procs: dict[str, Any], coordinator: Any = None, started: float = math.nan
) -> dict[str, ProcessStats]:
    """Stop the coordinator (SIGINT: it records the interruption in its job log), then SIGTERM every party
    process (a graceful shutdown) and reap it; anything still running after its grace period is killed.
    Returns the figures of each party that exited in time (`started`: when they were launched). A forked
    party's figures are read from /proc just before the signal (wait4 cannot report a non-child)."""
    if coordinator is not None and coordinator.poll() is None:
        coordinator.send_signal(signal.SIGINT)
        try:
            coordinator.wait(timeout=15)
        except subprocess.TimeoutExpired:
            coordinator.kill()
            coordinator.wait()
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


def start_coordinator(job: LocalJob) -> subprocess.Popen[bytes]:
    plan = str(job.work / "collaboration.toml")
    command = _command(job, "coordinator", "coordinator", "run", "--config", plan)
    coordinator = subprocess.Popen(command, env=_env(), cwd=job.work, start_new_session=True)
    job.pids["coordinator"] = coordinator.pid
    return coordinator


def run_local(job: LocalJob) -> int:
    """Run the collaboration; returns the coordinator's exit status (0 = results delivered), 130 on Ctrl-C."""
    check_before_start(job)
    print(describe_sources(job.sources), flush=True)
    start = time.perf_counter()
    procs: dict[str, Any] = {}
    coordinator: subprocess.Popen[bytes] | None = None
    setup, interrupted = 0.0, False
    if forked_launch(job):
        from cleanroom_cli.party_launcher import forkserver

        forkserver()  # its imports run while the certificates and data are written
    try:
        configs = prepare(job)
        setup = time.perf_counter() - start
        asyncio.run(start_and_wait(job, configs, procs))
        ready = time.perf_counter() - start
        print(
            f"[local] {len(procs)} party processes serving (setup {setup:.2f} s, ready at {ready:.2f} s)",
            flush=True,
        )
        coordinator_start = time.perf_counter()
        coordinator = start_coordinator(job)
        job.stats["coordinator"] = _reap(coordinator, coordinator_start)
        status = coordinator.returncode
        job.times = {
            "setup": setup,
            "parties_ready": ready - setup,
            "coordinator": job.stats["coordinator"].wall_s,
        }
    except KeyboardInterrupt:
        interrupted = True
    finally:
        job.stats.update(stop(procs, coordinator, start + setup))
    if interrupted:
        print_interrupted(job)  # every process is stopped: the ledgers are final
        return INTERRUPTED
    total = time.perf_counter() - start
    if status != 0:
        print(
            f"[local] coordinator failed with status {status}; party logs in {job.work / 'logs'}",
            file=sys.stderr,
        )
        return status
    print_summary(job, total)
    return 0


def print_interrupted(job: LocalJob) -> None:
    """After Ctrl-C: what each party's ledger charged, and what is left staged (every process is stopped)."""
    spent = {pid: ledger_spent(job, pid) for pid in job.parts}
    charged = [f"{pid} rho {rho:.6g}" for pid, rho in spent.items() if rho > 0]
    print("[local] interrupted; every party node and the coordinator were stopped", file=sys.stderr)
    if charged:
        print(f"[local] spent (each party's ledger): {', '.join(charged)}", file=sys.stderr)
    else:
        print("[local] nothing was spent (no party charged a round)", file=sys.stderr)
    staged = [job.work / "state" / f"{pid}-staged" for pid in job.parts]
    staged = [path for path in staged if path.is_dir() and any(path.iterdir())]
    results = job.work / "coordinator" / "results"
    if results.is_dir() and any(results.iterdir()):
        staged.append(results)
    if staged:
        listed = ", ".join(str(path) for path in staged)
        print(
            f"[local] left staged (undelivered; a party deletes its staged copy at its next start): {listed}",
            file=sys.stderr,
        )
    else:
        print("[local] nothing is left staged", file=sys.stderr)
    print(f"[local] ledgers, audit logs and node logs are kept in {job.work}", file=sys.stderr)


def ledger_spent(job: LocalJob, pid: str) -> float:
    """The rho a party's ledger has charged (0 when the party never opened its ledger)."""
    path = job.work / "state" / f"{pid}.sqlite"
    if not path.is_file():
        return 0.0
    try:
        return audit_vs_ledger(job, pid)[2]
    except (CleanroomError, OSError):
        return float("nan")


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
    if args.rows < MIN_PARTY_ROWS:
        raise InvalidInput(f"--rows {args.rows}: every party needs at least {MIN_PARTY_ROWS} rows")
    if args.parties < 2:
        raise InvalidInput(f"--parties {args.parties}: a collaboration needs at least 2 parties")
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
        synthetic_rows=max(MIN_SYNTHETIC_ROWS, args.rows * args.parties),
        result_format=args.format,
        seed=args.seed,
        max_membership_inference_score=args.max_membership_inference_score,
        sources=parse_sources(args.sources, list(parts)),
        fields=Fields(schema="the demo schema", epsilon="--epsilon", delta="--delta"),
    )
    return run_local(job)


def read_schema_json(path: str) -> dict[str, Any]:
    """The user's schema file as JSON; one line naming the file (and line and column) on failure."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise InvalidInput(f"{path}: cannot read schema file: {error.strerror or error}") from None
    except ValueError as error:  # a syntax error: one line naming the file, line and column (exit 2)
        raise InvalidInput(f"{path}: not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{path}: a schema must be a JSON object, got {type(data).__name__}")
    return data


def run_simulate(args: argparse.Namespace) -> int:
    schema = read_schema_json(args.schema)
    parts: dict[str, pd.DataFrame | Path] = {}
    for item in args.party:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InvalidInput(f"--party {item!r} must be NAME=PATH")
        if name in parts:
            raise InvalidInput(f"--party {name} is given twice; every party needs its own name")
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
        synthetic_rows=args.synthetic_rows,
        result_format=args.format,
        seed=args.seed,
        max_membership_inference_score=args.max_membership_inference_score,
        sources=parse_sources(args.sources, list(parts)),
        fields=Fields(
            schema=args.schema, target="--target", task="--task", synthetic_rows="--synthetic-rows",
            epsilon="--epsilon", delta="--delta",
        ),  # fmt: skip
    )
    return run_local(job)
