"""The `cleanroom` command: certificates, party nodes, coordinator, local demo/simulation, schema, plan,
audit.

Exit status: 0 on success, 2 for a configuration or input problem, 3 when the job was refused or aborted (a
party unreachable, a plan/schema mismatch, budget exhausted), 1 for anything unexpected.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from cleanroom.accounting import cdp_rho
from cleanroom.audit import AuditLog
from cleanroom.errors import CleanroomError, InvalidInput, NotFound
from cleanroom.ledger import Ledger
from cleanroom.plan import Plan

Handler = Callable[[argparse.Namespace], int]


def cmd_ca_init(args: argparse.Namespace) -> int:
    from transport.ca import init_ca

    path = init_ca(Path(args.dir), days=args.days)
    print(f"collaboration CA written to {path}")
    return 0


def cmd_ca_issue(args: argparse.Namespace) -> int:
    from transport.ca import issue

    files = issue(
        Path(args.dir),
        args.name,
        role=args.role,
        dns_names=tuple(args.dns or ()),
        days=args.days,
        out_dir=Path(args.out) if args.out else None,
    )
    print(f"certificate {files.cert}\nkey {files.key}\nidentity key {files.identity_key}")
    print(f'cert_sha256 = "{files.cert_sha256}"\nidentity_key = "{files.identity_public_b64}"')
    return 0


def cmd_party_serve(args: argparse.Namespace) -> int:
    from party.config import PartyConfig
    from party.run import serve

    asyncio.run(serve(PartyConfig.load(Path(args.config))))
    return 0


def cmd_party_budget(args: argparse.Namespace) -> int:
    from party.config import PartyConfig
    from party.run import total_rho

    config = PartyConfig.load(Path(args.config))
    ledger = Ledger(config.ledger, total_rho(config))
    print(f"dataset: spent rho {ledger.spent():.6g}, remaining {ledger.remaining():.6g}")
    plan = Plan.load(config.plan)
    spent_by_plan = ledger.spent_by_plan()
    plan_total = cdp_rho(float(plan.epsilon), float(plan.delta))
    plan_spent = float(spent_by_plan.get(plan.hash, 0.0))
    plan_left = min(max(0.0, plan_total - plan_spent), float(ledger.remaining()))
    print(
        f"  plan {plan.hash} (this node's): spent {plan_spent:.6g} of {plan_total:.6g} "
        f"(epsilon {plan.epsilon}, delta {plan.delta}), remaining {plan_left:.6g}"
    )
    for plan_hash, rho in spent_by_plan.items():
        if plan_hash != plan.hash:
            print(f"  plan {plan_hash}: spent {rho:.6g}")
    return 0


def cmd_party_prune(args: argparse.Namespace) -> int:
    from party.config import PartyConfig
    from party.run import prune_delivered

    config = PartyConfig.load(Path(args.config))
    audit = AuditLog(config.audit_log) if config.audit_log else None
    removed = prune_delivered(config, Plan.load(config.plan), audit)
    print(f"removed {len(removed)} expired result files from {config.output_dir}")
    return 0


def cmd_coordinator_run(args: argparse.Namespace) -> int:
    from coordinator.config import CoordinatorConfig
    from coordinator.workflow import run_job

    config = CoordinatorConfig.load(Path(args.config))
    print(f"[coordinator] job log: {config.job_log_path}", flush=True)
    record = asyncio.run(run_job(config))
    print(f"[coordinator] job {record.job_id} done; rho spent {record.rho_spent:.6g}")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    import grpc

    from transport.channel import check_health, secure_channel
    from transport.tls import TlsFiles

    async def check() -> str:
        tls = TlsFiles(Path(args.ca), Path(args.cert), Path(args.key))
        async with secure_channel(args.address, tls, args.id) as channel:
            try:
                return await check_health(channel, args.service, timeout=args.timeout)
            except grpc.RpcError as error:
                return f"UNREACHABLE ({error.code().name})"

    status = asyncio.run(check())
    print(status)
    return 0 if status == "SERVING" else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from cleanroom_cli.local import run_demo

    return run_demo(args)


def cmd_simulate(args: argparse.Namespace) -> int:
    from cleanroom_cli.local import run_simulate

    return run_simulate(args)


def cmd_schema_infer(args: argparse.Namespace) -> int:
    from cleanroom import schema_infer

    schema = schema_infer.infer_schema(args.data, target=args.target)
    text = schema.to_json(indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
        print(f"draft schema written to {args.out}")
    else:
        print(text)
    print(schema_infer.DOMAIN_WARNING, file=sys.stderr)
    return 0


def cmd_plan_approve(args: argparse.Namespace) -> int:
    from cleanroom import identity

    path = identity.approve(Path(args.plan), identity.load_private_key(Path(args.key)), args.member)
    print(f"approval written to {path}")
    return 0


def cmd_plan_show(args: argparse.Namespace) -> int:
    from cleanroom.plan import Plan

    print(Plan.load(Path(args.plan)).describe(), end="")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from cleanroom import audit

    if args.action == "verify":
        result = audit.verify(Path(args.log))
        print(result.describe())
        return 0 if result.ok else 1
    print(audit.summarize(Path(args.log)), end="")
    return 0


def cmd_audit_fetch(args: argparse.Namespace) -> int:
    """Read a party's audit log over mutual TLS (needs `read_audit_log`); writes FILE and FILE.head."""
    from cleanroom.audit import head_path
    from transport.channel import read_audit_log, secure_channel
    from transport.tls import TlsFiles

    async def fetch() -> tuple[bytes, bytes]:
        tls = TlsFiles(Path(args.ca), Path(args.cert), Path(args.key))
        async with secure_channel(args.address, tls, args.id) as channel:
            return await read_audit_log(channel, args.id, plan_hash, timeout=args.timeout)

    plan_hash = Plan.load(Path(args.plan)).hash
    data, head = asyncio.run(fetch())
    out = Path(args.out)
    out.write_bytes(data)
    anchor = head_path(out)
    if head:
        anchor.write_bytes(head)
    else:
        anchor.unlink(missing_ok=True)  # a stale anchor from an earlier fetch would not match
    anchored = f", head anchor {anchor}" if head else " (the party keeps no head anchor)"
    print(f"audit log of {args.id} ({len(data)} bytes) written to {out}{anchored}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cleanroom", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_ca(sub)
    _add_party(sub)
    coord = sub.add_parser("coordinator", help="run a collaboration job").add_subparsers(
        dest="action", required=True
    )
    run = coord.add_parser("run", help="run the job described by collaboration.toml")
    run.add_argument("--config", required=True)
    run.set_defaults(handler=cmd_coordinator_run)
    health = sub.add_parser("health", help="gRPC health check of a node over mutual TLS")
    for flag in ("--address", "--ca", "--cert", "--key", "--id"):
        health.add_argument(flag, required=True)
    health.add_argument("--service", default="")
    health.add_argument("--timeout", type=float, default=5.0)
    health.set_defaults(handler=cmd_health)
    _add_local(sub)
    schema = sub.add_parser("schema").add_subparsers(dest="action", required=True)
    infer = schema.add_parser("infer", help="draft a schema from a CSV (review it: see the warning)")
    infer.add_argument("data", help="a CSV or Parquet file")
    infer.add_argument("--target")
    infer.add_argument("--out")
    infer.set_defaults(handler=cmd_schema_infer)
    plan = sub.add_parser("plan").add_subparsers(dest="action", required=True)
    approve = plan.add_parser("approve", help="sign a plan with this member's Ed25519 identity key")
    approve.add_argument("plan")
    approve.add_argument("--key", required=True, help="the member's identity key (e.g. certs/<id>.ed25519)")
    approve.add_argument("--member", help="member id (default: the member whose identity_key matches)")
    approve.set_defaults(handler=cmd_plan_approve)
    show = plan.add_parser("show", help="validate a plan and print its summary and hash")
    show.add_argument("plan")
    show.set_defaults(handler=cmd_plan_show)
    _add_audit(sub)
    return parser


def _add_audit(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    audit = sub.add_parser("audit", help="verify, show or fetch a hash-chained audit log").add_subparsers(
        dest="action", required=True
    )
    for action, text in (("verify", "check the chain and its head anchor"), ("show", "summarise a log")):
        parser = audit.add_parser(action, help=text)
        parser.add_argument("log")
        parser.set_defaults(handler=cmd_audit)
    fetch = audit.add_parser("fetch", help="read a party's audit log over mutual TLS (read_audit_log)")
    for flag in ("--address", "--ca", "--cert", "--key", "--plan", "--out"):
        fetch.add_argument(flag, required=True)
    fetch.add_argument("--id", required=True, help="the party's member id (its certificate's DNS SAN)")
    fetch.add_argument("--timeout", type=float, default=30.0)
    fetch.set_defaults(handler=cmd_audit_fetch)


def _add_ca(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ca = sub.add_parser("ca", help="collaboration certificate authority").add_subparsers(
        dest="action", required=True
    )
    init = ca.add_parser("init", help="create the collaboration CA")
    init.add_argument("--dir", default="certs")
    init.add_argument("--days", type=int, default=365)
    init.set_defaults(handler=cmd_ca_init)
    issue = ca.add_parser("issue", help="issue a node certificate and identity key")
    issue.add_argument("name")
    issue.add_argument("--dir", default="certs")
    issue.add_argument("--role", choices=["party", "coordinator"], default="party")
    issue.add_argument("--dns", action="append", help="extra DNS SAN (repeatable)")
    issue.add_argument("--days", type=int, default=30)
    issue.add_argument("--out", help="write the node's files here instead of the CA directory")
    issue.set_defaults(handler=cmd_ca_issue)


def _add_party(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    party = sub.add_parser("party", help="party node").add_subparsers(dest="action", required=True)
    serve = party.add_parser("serve", help="serve this party's node")
    serve.add_argument("--config", required=True)
    serve.set_defaults(handler=cmd_party_serve)
    budget = party.add_parser("budget", help="show this party's privacy ledger")
    budget.add_argument("--config", required=True)
    budget.set_defaults(handler=cmd_party_budget)
    prune = party.add_parser("prune", help="delete delivered results older than the plan's retention_days")
    prune.add_argument("--config", required=True)
    prune.set_defaults(handler=cmd_party_prune)


def _add_local(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    demo = sub.add_parser("demo", help="run a whole collaboration locally on generated sample data")
    demo.add_argument("--parties", type=int, default=3)
    demo.add_argument("--rows", type=int, default=30000, help="rows per party")
    demo.add_argument("--epsilon", type=float, default=1.0)
    demo.add_argument("--delta", type=float, default=1e-9)
    demo.add_argument("--out", default="out/demo")
    demo.add_argument("--format", choices=["csv", "parquet"], default="csv")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--max-membership-inference-score", type=float, default=0.8, help="release gate")
    demo.add_argument(
        "--sources",
        metavar="KIND[,KIND...]",
        help="data source kind per party: csv, parquet, postgresql (needs CLEANROOM_PG_DSN) or spark "
        "(local Spark: pyspark and Java); default csv",
    )
    demo.set_defaults(handler=cmd_demo)
    sim = sub.add_parser("simulate", help="run a whole collaboration locally on your own CSV files")
    sim.add_argument("--schema", required=True)
    sim.add_argument("--party", action="append", required=True, metavar="NAME=PATH")
    sim.add_argument("--target", required=True)
    sim.add_argument("--task", choices=["classification", "regression"], required=True)
    sim.add_argument("--epsilon", type=float, required=True)
    sim.add_argument("--delta", type=float, default=1e-9)
    sim.add_argument("--rows", type=int, default=0, help="synthetic rows (0 = the noisy total)")
    sim.add_argument("--out", required=True)
    sim.add_argument("--format", choices=["csv", "parquet"], default="csv")
    sim.add_argument("--max-membership-inference-score", type=float, default=0.8, help="release gate")
    sim.add_argument("--seed", type=int, default=None)
    sim.add_argument(
        "--sources",
        metavar="KIND[,KIND...]",
        help="data source kind per party: csv, parquet, postgresql (needs CLEANROOM_PG_DSN) or spark "
        "(local Spark: pyspark and Java); default csv",
    )
    sim.set_defaults(handler=cmd_simulate)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        return int(args.handler(args))
    except (InvalidInput, NotFound) as error:
        print(f"cleanroom: error: {error}", file=sys.stderr)
        return 2
    except CleanroomError as error:
        print(f"cleanroom: job stopped: {error}", file=sys.stderr)
        return 3
    except (OSError, TimeoutError) as error:
        print(f"cleanroom: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
