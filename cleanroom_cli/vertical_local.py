"""`cleanroom demo --vertical` and `cleanroom simulate --vertical`: a joined collaboration of two party
processes and a coordinator on this machine, over gRPC with mutual TLS (the same runner as the horizontal
demo, `cleanroom_cli.local`, with a vertical plan).

`simulate --vertical --party NAME=PATH:col1,col2,...` names each party's CSV and the schema columns it holds
(the join key, the schema's identifier marked `"join_key": true`, must be in every file). `--max-rows`
is the public bound every list is padded to (default: the larger party's row count; in a real deployment
the parties agree on it in the plan, since it is public).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd

from cleanroom.errors import InvalidInput
from cleanroom.vertical.sample import COLUMNS, SCHEMA, TARGET, demo_parties
from cleanroom_cli.local import LocalJob, run_local, toml_table


def vertical_tables(columns: dict[str, list[str]], join_key: str, max_rows: int) -> str:
    text = "\n[vertical]\n" + toml_table({"join_key": join_key, "max_rows": max_rows})
    return text + "\n[vertical.columns]\n" + toml_table(columns)


def vertical_job(
    args: argparse.Namespace,
    schema: dict[str, Any],
    parts: dict[str, Any],
    columns: dict[str, list[str]],
    target: str,
    task: str,
    max_rows: int,
    rows: int,
) -> LocalJob:
    key = next((c["name"] for c in schema["columns"] if c.get("join_key")), None)
    if key is None:
        raise InvalidInput('a vertical collaboration needs a schema column with "join_key": true')
    return LocalJob(
        Path(args.out).resolve(), schema, parts, target, task, args.epsilon, args.delta,
        synthetic_rows=rows, result_format=args.format, seed=args.seed,
        plan_fields={"partitioning": "vertical"}, plan_tables=vertical_tables(columns, key, max_rows),
    )  # fmt: skip


def run_demo_vertical(args: argparse.Namespace) -> int:
    parts = demo_parties(args.rows, args.overlap, args.seed)
    columns = {p: list(c) for p, c in COLUMNS.items()}
    print(f"[local] vertical demo: airline {columns['airline']}, hotel {columns['hotel']} (target {TARGET}); "
          f"{args.rows} customers each, {args.overlap:.0%} at both, keyed by e-mail", flush=True)  # fmt: skip
    job = vertical_job(args, SCHEMA, dict(parts), columns, TARGET, "classification", args.rows, args.rows)
    return finish(job, run_local(job))


def parse_party(item: str) -> tuple[str, Path, list[str]]:
    name, sep, rest = item.partition("=")
    path, sep2, listed = rest.rpartition(":")
    if not sep or not name or not sep2 or not path or not listed:
        raise InvalidInput(f"--party {item!r} must be NAME=PATH:col1,col2,... with --vertical")
    if not Path(path).is_file():
        raise InvalidInput(f"--party {name}: file {path} does not exist")
    return name, Path(path), [c.strip() for c in listed.split(",") if c.strip()]


def run_simulate_vertical(args: argparse.Namespace, schema: dict[str, Any]) -> int:
    parts: dict[str, Any] = {}
    columns: dict[str, list[str]] = {}
    for item in args.party:
        name, path, listed = parse_party(item)
        parts[name], columns[name] = path, listed
    if len(parts) != 2:
        raise InvalidInput(f"--vertical needs exactly two --party entries, got {len(parts)}")
    rows = {name: len(pd.read_csv(path)) for name, path in parts.items()}
    max_rows = args.max_rows or max(rows.values())
    job = vertical_job(args, schema, parts, columns, args.target, args.task, max_rows, args.rows)
    return finish(job, run_local(job))


def finish(job: LocalJob, status: int) -> int:
    record_path = job.work / "coordinator" / "job.json"
    if status == 0 and record_path.is_file():
        record = json.loads(record_path.read_text())
        print("[local] bytes each party sent (PSI / cross-party tables / rest):")
        for party, data in record.get("vertical", {}).get("bytes", {}).items():
            up = data["received_from_party"]
            print(f"  {party:<10} {up['psi']:>13,} B / {up['tables']:>13,} B / {up['rest']:>11,} B")
    return status
