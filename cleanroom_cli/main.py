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
from typing import TYPE_CHECKING, Any

from cleanroom.accounting import cdp_rho
from cleanroom.audit import AuditLog
from cleanroom.errors import CleanroomError, InvalidInput, NotFound, PermissionDenied
from cleanroom.ledger import Ledger
from cleanroom.plan import Plan

if TYPE_CHECKING:
    from transport.tls import TlsFiles

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


def _health_target(args: argparse.Namespace) -> tuple[str, str, TlsFiles]:
    """Address, node id and TLS files: from the flags, or from a party.toml (`--config`: in a container)."""
    from transport.tls import TlsFiles

    flags = {flag: getattr(args, flag[2:]) for flag in ("--address", "--ca", "--cert", "--key", "--id")}
    if args.config is None:
        missing = [flag for flag, value in flags.items() if value is None]
        if missing:
            raise InvalidInput(f"health needs --config or all of {', '.join(flags)} (missing {missing[0]})")
        return args.address, args.id, TlsFiles(Path(args.ca), Path(args.cert), Path(args.key))
    given = [flag for flag, value in flags.items() if value is not None]
    if given:
        raise InvalidInput(f"health takes --config or {given[0]}, not both")
    from party.config import PartyConfig

    config = PartyConfig.load(Path(args.config))
    host, _, port = config.listen.rpartition(":")
    if host in ("", "0.0.0.0", "::", "[::]"):  # listening on every interface: ask on loopback
        host = "127.0.0.1"
    return f"{host}:{port}", config.party_id, config.tls


def cmd_health(args: argparse.Namespace) -> int:
    import grpc

    from transport.channel import check_health, secure_channel

    address, node_id, tls = _health_target(args)

    async def check() -> str:
        async with secure_channel(address, tls, node_id) as channel:
            try:
                return await check_health(channel, args.service, timeout=args.timeout)
            except grpc.RpcError as error:
                return f"UNREACHABLE ({error.code().name})"

    status = asyncio.run(check())
    print(status)
    return 0 if status == "SERVING" else 1


def cmd_demo(args: argparse.Namespace) -> int:
    if args.vertical:
        from cleanroom_cli.vertical_local import run_demo_vertical

        return run_demo_vertical(args)
    from cleanroom_cli.local import run_demo

    return run_demo(args)


def cmd_simulate(args: argparse.Namespace) -> int:
    if args.vertical:
        import json

        from cleanroom_cli.vertical_local import run_simulate_vertical

        try:
            schema = json.loads(Path(args.schema).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise InvalidInput(f"{args.schema}: cannot read the schema: {error}") from None
        return run_simulate_vertical(args, schema)
    from cleanroom_cli.local import run_simulate

    return run_simulate(args)


def cmd_schema_infer(args: argparse.Namespace) -> int:
    from cleanroom import schema_infer

    try:
        schema = schema_infer.infer_schema(args.data, target=args.target)
    except InvalidInput as error:
        text = str(error)
        raise InvalidInput(text if text.startswith(str(args.data)) else f"{args.data}: {text}") from None
    text = schema.to_json(indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
        print(f"draft schema written to {args.out}")
    else:
        print(text)
    print(schema_infer.DOMAIN_WARNING, file=sys.stderr)
    return 0


def cmd_schema_hash(args: argparse.Namespace) -> int:
    from cleanroom.schema import Schema

    print(Schema.load(Path(args.schema)).hash())
    return 0


def cmd_plan_approve(args: argparse.Namespace) -> int:
    from cleanroom import identity

    try:
        path = identity.approve(Path(args.plan), identity.load_private_key(Path(args.key)), args.member)
    except PermissionDenied as error:  # the wrong key for this plan: a local mistake, not a refused job
        raise InvalidInput(f"{error}; pass --key with your identity key (`cleanroom ca issue`)") from None
    print(f"approval written to {path}")
    print(f"plan hash {Plan.load(Path(args.plan)).hash}: list it in your party.toml's approved_plans")
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


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows every optional value's default ("(default: 0.8)") and keeps the descriptions' line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        hidden = default is None or default is False or default == argparse.SUPPRESS
        if action.required or hidden or "%(default)" in text:
            return text
        return f"{text} (default: {default if default != '' else 'empty'})"


class DeprecatedRows(argparse.Action):
    """`simulate --rows N`: the old spelling of --synthetic-rows (demo's --rows means rows per party)."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None
    ) -> None:
        print("cleanroom: warning: simulate --rows is deprecated; use --synthetic-rows", file=sys.stderr)
        setattr(namespace, self.dest, values)


SubParsers = argparse._SubParsersAction  # type: ignore[type-arg]


def command(sub: SubParsers, name: str, text: str, handler: Handler | None = None) -> argparse.ArgumentParser:
    """A sub-command whose one-line `text` is both its summary in the parent's help and its description."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=text, description=text, formatter_class=HelpFormatter
    )
    if handler is not None:
        parser.set_defaults(handler=handler)
    return parser


def group(sub: SubParsers, name: str, text: str) -> SubParsers:
    return command(sub, name, text).add_subparsers(dest="action", required=True, metavar="ACTION")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cleanroom", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log INFO messages to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_local(sub)
    _add_ca(sub)
    _add_party(sub)
    coord = group(sub, "coordinator", "the coordinator: drive a collaboration job")
    run = command(coord, "run", "run one job of the plan in collaboration.toml (handshake, rounds, "
                  "fit, train, evaluate, gate, deliver)", cmd_coordinator_run)  # fmt: skip
    run.add_argument("--config", required=True, help="the plan with its [coordinator] table")
    health = command(sub, "health", "gRPC health check of a node over mutual TLS; prints SERVING or why "
                     "not (exit 0 only when SERVING)", cmd_health)  # fmt: skip
    health.add_argument("--config", help="a party.toml: its listen port, party_id and [tls] files (in a "
                        "container: the image's HEALTHCHECK); instead of the five options below")  # fmt: skip
    for flag, text in (
        ("--address", "the node's host:port"),
        ("--ca", "the collaboration CA certificate (PEM)"),
        ("--cert", "your certificate (PEM)"),
        ("--key", "your private key (PEM)"),
        ("--id", "the node's member id (its certificate's DNS name)"),
    ):
        health.add_argument(flag, help=text)
    health.add_argument("--service", default="", help="service to check (empty: the whole server), e.g. "
                        "transport.v1.PartyService")  # fmt: skip
    health.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer")
    _add_schema(sub)
    _add_plan(sub)
    _add_audit(sub)
    return parser


def _add_schema(sub: SubParsers) -> None:
    schema = group(sub, "schema", "draft a schema from data, or print a schema's hash")
    infer = command(schema, "infer", "draft a schema from a CSV or Parquet file (domains taken from data "
                    "are not private: review them before sharing)", cmd_schema_infer)  # fmt: skip
    infer.add_argument("data", help="a CSV or Parquet file")
    infer.add_argument("--target", help="mark this column as the target (the column to predict)")
    infer.add_argument("--out", help="write the draft here instead of printing it")
    hashed = command(schema, "hash", "print a schema file's hash (the plan's schema_hash)", cmd_schema_hash)
    hashed.add_argument("schema", help="the schema JSON file")


def _add_plan(sub: SubParsers) -> None:
    plan = group(sub, "plan", "approve (sign) or check a collaboration plan")
    approve = command(plan, "approve", "sign a plan with this member's Ed25519 identity key; prints the plan "
                      "hash to list in party.toml's approved_plans", cmd_plan_approve)  # fmt: skip
    approve.add_argument("plan", help="the plan file (e.g. collaboration.toml)")
    approve.add_argument("--key", required=True, help="the member's identity key (e.g. certs/<id>.ed25519)")
    approve.add_argument("--member", help="member id (default: the member whose identity_key matches)")
    show = command(plan, "show", "validate a plan fully (fields, members, schema hash, target and task, "
                   "epsilon against the noise floor); print its summary and hash", cmd_plan_show)  # fmt: skip
    show.add_argument("plan", help="the plan file (e.g. collaboration.toml)")


def _add_audit(sub: SubParsers) -> None:
    audit = group(sub, "audit", "verify, show or fetch a party's hash-chained audit log")
    verify = command(audit, "verify", "check a log's hash chain and its head anchor (exit 1 if broken)",
                     cmd_audit)  # fmt: skip
    verify.add_argument("log", help="the audit log (JSON lines; its anchor is LOG.head)")
    show = command(audit, "show", "summarise a log: answers, refusals and charges", cmd_audit)
    show.add_argument("log", help="the audit log (JSON lines)")
    fetch = command(audit, "fetch", "read a party's audit log over mutual TLS (needs read_audit_log in the "
                    "plan); writes OUT and OUT.head", cmd_audit_fetch)  # fmt: skip
    for flag, text in (
        ("--address", "the party's host:port"),
        ("--ca", "the collaboration CA certificate (PEM)"),
        ("--cert", "your certificate (PEM)"),
        ("--key", "your private key (PEM)"),
        ("--plan", "the plan file both of you approved"),
        ("--out", "where to write the log"),
    ):
        fetch.add_argument(flag, required=True, help=text)
    fetch.add_argument("--id", required=True, help="the party's member id (its certificate's DNS SAN)")
    fetch.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answer")


def _add_ca(sub: SubParsers) -> None:
    ca = group(sub, "ca", "the collaboration's certificate authority")
    init = command(ca, "init", "create the collaboration CA (ca.pem, ca.key: keep ca.key offline)",
                   cmd_ca_init)  # fmt: skip
    init.add_argument("--dir", default="certs", help="directory for ca.pem and ca.key")
    init.add_argument("--days", type=int, default=365, help="validity of the CA certificate")
    issue = command(ca, "issue", "issue a node certificate, its key and an Ed25519 identity key; prints "
                    "the plan's cert_sha256 and identity_key for it", cmd_ca_issue)  # fmt: skip
    issue.add_argument("name", help="the node's member id (e.g. airline, coordinator)")
    issue.add_argument("--dir", default="certs", help="the CA directory (from ca init)")
    issue.add_argument("--role", choices=["party", "coordinator"], default="party", help="the node's role")
    issue.add_argument("--dns", action="append", help="extra DNS name for the certificate (repeatable)")
    issue.add_argument("--days", type=int, default=30, help="validity of the node certificate")
    issue.add_argument("--out", help="write the node's files here instead of the CA directory")


def _add_party(sub: SubParsers) -> None:
    party = group(sub, "party", "a party node: serve, show its budget, prune old results")
    for name, text, handler in (
        ("serve", "check the state, the data and the plan, then serve the party node until SIGTERM",
         cmd_party_serve),
        ("budget", "show this party's privacy ledger: spent and remaining, per plan", cmd_party_budget),
        ("prune", "delete delivered results older than the plan's retention_days", cmd_party_prune),
    ):  # fmt: skip
        command(party, name, text, handler).add_argument("--config", required=True, help="party.toml")


def _add_local(sub: SubParsers) -> None:
    demo = command(sub, "demo", "run a whole collaboration on this machine on generated sample data (one "
                   "process per node, mutual TLS on loopback)", cmd_demo)  # fmt: skip
    demo.add_argument("--parties", type=int, default=3, help="number of party nodes")
    demo.add_argument("--rows", type=int, default=30000, help="rows of sample data per party")
    _add_run_options(demo, epsilon_required=False)
    demo.add_argument("--seed", type=int, default=0, help="seeds the sample data, synthesis and training "
                      "(never the noise)")  # fmt: skip
    demo.add_argument("--vertical", action="store_true",
                      help="joined collaboration: an airline and a hotel chain hold different columns")
    demo.add_argument("--overlap", type=float, default=0.8, help="--vertical: share of customers at both")
    sim = command(sub, "simulate", "run a whole collaboration on this machine on your own CSV files (one "
                  "process per node, mutual TLS on loopback)", cmd_simulate)  # fmt: skip
    sim.add_argument("--schema", required=True, help="the schema JSON file")
    sim.add_argument("--party", action="append", required=True, metavar="NAME=PATH",
                     help="a party and its CSV file (repeat for each party, at least 2)")  # fmt: skip
    sim.add_argument("--target", required=True, help="the column to predict (a measured schema column)")
    sim.add_argument("--task", choices=["classification", "regression"], required=True,
                     help="classification (categorical target) or regression (numerical target)")  # fmt: skip
    sim.add_argument("--synthetic-rows", type=int, default=0,
                     help="synthetic rows to generate (0: the noisy total of the parties' rows)")  # fmt: skip
    sim.add_argument("--rows", type=int, dest="synthetic_rows", action=DeprecatedRows, help=argparse.SUPPRESS)
    _add_run_options(sim, epsilon_required=True)
    sim.add_argument("--seed", type=int, default=None, help="seeds synthesis and training (never the noise)")
    sim.add_argument("--vertical", action="store_true",
                     help="joined collaboration: --party NAME=PATH:col1,col2,... (the columns each holds)")
    sim.add_argument("--max-rows", type=int, default=0, help="--vertical: public bound on each party's rows")


def _add_run_options(parser: argparse.ArgumentParser, epsilon_required: bool) -> None:
    if epsilon_required:
        parser.add_argument("--epsilon", type=float, required=True, help="the job's privacy budget epsilon")
    else:
        parser.add_argument("--epsilon", type=float, default=1.0, help="the job's privacy budget epsilon")
    parser.add_argument("--delta", type=float, default=1e-9, help="the job's privacy budget delta")
    parser.add_argument("--out", required=epsilon_required, default=None if epsilon_required else "out/demo",
                        help="output folder: <out>/<party>/ results, <out>/_work/ nodes' files")  # fmt: skip
    parser.add_argument("--format", choices=["csv", "parquet"], default="csv", help="synthetic data format")
    parser.add_argument("--max-membership-inference-score", type=float, default=0.8,
                        help="release gate: nothing but the report is delivered if an attack scores "
                        "above this")  # fmt: skip
    parser.add_argument("--sources", metavar="KIND[,KIND...]",
                        help="data source kind per party, in order: csv, parquet, postgresql (needs "
                        "CLEANROOM_PG_DSN) or spark (local Spark: pyspark and Java); default: csv for every "
                        "party")  # fmt: skip


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
