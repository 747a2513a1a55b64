"""Benchmark the party data sources: all 1-way and 2-way marginals of N rows x 15 columns.

Generates N rows (default 10 million; 7 numerical and 8 categorical columns with NaN, out-of-range values and
unknown categories) as Parquet and CSV, loads them into PostgreSQL when CLEANROOM_PG_DSN is set, then measures
each source in a fresh subprocess (the "party process") and prints: seconds to compute all 120 tables, rows
per second, the process's peak RSS and CPU seconds, and the PostgreSQL server's CPU seconds (summed over its
processes, when it runs on this machine). `--sources spark` reads the same Parquet file with a local Spark
(`--spark-master local[*]`, the party process starts the JVM): its row also gives the session start-up
seconds, the JVM's CPU seconds (in the server column) and the JVM's peak RSS. "again s" is a second
`count_tables` on the same source (a later round of a job: DuckDB and Spark reuse their codes). Usage:
    python scripts/bench_sources.py [--rows 10000000] [--dir /tmp/cleanroom-bench] \
        [--sources parquet,csv,postgresql,spark] [--repeat 3] [--spark-master local[*]]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHUNK = 1_000_000
N_CATEGORIES = (2, 3, 5, 8, 12, 16, 20, 40)
NUMERICAL = (  # name, lower, upper, number of bins, integer
    ("age", 0, 100, 10, True),
    ("income", 0, 500_000, 25, False),
    ("score", -3, 3, 12, False),
    ("visits", 0, 60, 30, True),
    ("tenure", 0, 40, 8, True),
    ("balance", -10_000, 90_000, 20, False),
    ("ratio", 0, 1, 16, False),
)


def schema_json() -> dict[str, object]:
    columns: list[dict[str, object]] = []
    for name, lower, upper, n_bins, integer in NUMERICAL:
        edges = np.linspace(lower, upper, n_bins + 1)
        bins = (
            [int(e) for e in edges]
            if integer and all(float(e).is_integer() for e in edges)
            else edges.tolist()
        )
        columns.append(
            {
                "name": name,
                "type": "numerical",
                "lower": lower,
                "upper": upper,
                "bins": bins,
                "integer": integer,
            }
        )
    for j, k in enumerate(N_CATEGORIES):
        columns.append(
            {
                "name": f"cat{j}",
                "type": "categorical",
                "categories": [f"v{i}" for i in range(k)],
                "policy": {"unknown_category": "other"},
            }
        )
    return {"columns": columns, "policy": {"out_of_range": "clip", "missing": "level"}}


def chunk_table(rng: np.random.Generator, n: int) -> pa.Table:
    data: dict[str, pa.Array] = {}
    for name, lower, upper, _, integer in NUMERICAL:
        span = upper - lower
        values = rng.normal(lower + span / 2, span / 3, n)  # ~13% out of range, clipped
        if integer:
            values = np.round(values)
        mask = rng.random(n) < 0.02
        data[name] = pa.array(values.astype(np.int64) if integer else values, mask=mask)
    for j in range(len(N_CATEGORIES)):
        codes = rng.zipf(1.6, n) - 1  # long tail beyond k: unknown categories
        strings = np.char.add("v", codes.astype(str))
        data[f"cat{j}"] = pa.array(strings, mask=rng.random(n) < 0.01)
    return pa.table(data)


def generate(rows: int, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "schema.json").write_text(json.dumps(schema_json(), indent=1))
    rng = np.random.default_rng(20261127)
    parquet_writer = csv_writer = None
    for start in range(0, rows, CHUNK):
        table = chunk_table(rng, min(CHUNK, rows - start))
        if parquet_writer is None:
            parquet_writer = pq.ParquetWriter(directory / "data.parquet", table.schema)
            csv_writer = pacsv.CSVWriter(directory / "data.csv", table.schema)
        parquet_writer.write_table(table)
        csv_writer.write_table(table)
    assert parquet_writer is not None and csv_writer is not None
    parquet_writer.close()
    csv_writer.close()
    (directory / "rows").write_text(str(rows))


def load_postgres(dsn: str, directory: Path, table: str) -> None:
    import psycopg

    columns = [f'"{n}" {"bigint" if integer else "double precision"}' for n, _, _, _, integer in NUMERICAL]
    columns += [f'"cat{j}" text' for j in range(len(N_CATEGORIES))]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE UNLOGGED TABLE {table} ({', '.join(columns)})")
        with (
            conn.cursor().copy(f"COPY {table} FROM STDIN (FORMAT csv, HEADER true)") as copy,
            open(directory / "data.csv", "rb") as handle,
        ):
            while block := handle.read(1 << 20):
                copy.write(block)
        conn.execute(f"ANALYZE {table}")


def measure(kind: str, directory: Path, table: str, spark_master: str) -> dict[str, float]:
    """Runs inside the measured subprocess: open the source, compute all 1-way and 2-way tables."""
    from cleanroom.schema import Schema
    from party.sources import SourceSpec, open_source
    from party.sources.spec import SparkSettings

    schema = Schema.load(directory / "schema.json")
    if kind == "postgresql":
        spec = SourceSpec(kind="postgresql", dsn=os.environ["CLEANROOM_PG_DSN"], table=table)
    elif kind == "spark":
        settings = SparkSettings(
            location=str(directory / "data.parquet"), master=spark_master, conf=SPARK_CONF
        )
        spec = SourceSpec(kind="spark", spark=settings)
    else:
        spec = SourceSpec(kind=kind, path=directory / f"data.{kind}")
    attrs = list(schema.domain.attrs)
    cliques = [(a,) for a in attrs] + list(itertools.combinations(attrs, 2))
    opened = time.perf_counter()
    with open_source(spec, schema) as source:
        source.check_schema()
        opened = time.perf_counter() - opened
        server = server_cpu_s(kind)
        start, cpu = time.perf_counter(), time.process_time()
        tables = source.count_tables(cliques)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        server = server_cpu_s(kind) - server
        again = time.perf_counter()
        source.count_tables(cliques)  # a later round: DuckDB and Spark reuse the codes they computed
        again = time.perf_counter() - again
        jvm_rss = jvm_peak_rss_kib() / 1024 if kind == "spark" else math.nan
    rows = int(tables[0].sum())
    return {
        "tables": len(tables), "rows": rows, "seconds": seconds, "cpu_s": cpu, "server_cpu_s": server,
        "peak_rss_mib": peak_rss_kib() / 1024, "open_s": opened, "jvm_peak_rss_mib": jvm_rss,
        "again_s": again,
    }  # fmt: skip


# The local Spark of the benchmark: the JVM's heap and Spark's own parallelism for 2 cores.
SPARK_CONF = (("spark.driver.memory", "2g"), ("spark.sql.shuffle.partitions", "4"))


def jvm_peak_rss_kib() -> float:
    """Peak RSS (VmHWM) of the Java processes this process started (the local Spark driver/executor)."""
    total, me = 0, str(os.getpid())
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or (entry / "stat").read_text().rsplit(")", 1)[1].split()[1] != me:
                continue
            status = (entry / "status").read_text()
        except OSError:
            continue
        if "java" in (entry / "cmdline").read_bytes().decode(errors="replace"):
            total += int(next(x for x in status.splitlines() if x.startswith("VmHWM:")).split()[1])
    return total if total else math.nan


def server_cpu_s(kind: str) -> float:
    """CPU seconds of every PostgreSQL process on this machine, reaped parallel workers included (NaN if the
    server runs elsewhere or as another user we cannot see), or of the local Spark JVM; the difference around
    a query is its cost."""
    if kind not in ("postgresql", "spark"):
        return math.nan
    ticks, total, seen = os.sysconf("SC_CLK_TCK"), 0, False
    names = ("postgres", "postmaster") if kind == "postgresql" else ("java",)
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        if kind == "spark" and stat and stat.rsplit(")", 1)[1].split()[1] != str(os.getpid()):
            continue  # only the JVM this process started
        if stat and stat[stat.index("(") + 1 : stat.rindex(")")].startswith(names):
            seen = True
            total += sum(int(x) for x in stat.rsplit(")", 1)[1].split()[11:15])  # utime stime cutime cstime
    return total / ticks if seen else math.nan


def peak_rss_kib() -> int:
    """This process's peak RSS (VmHWM; unlike ru_maxrss it is not inherited from the parent across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_measurement(kind: str, directory: Path, table: str, spark_master: str) -> dict[str, float]:
    command = [sys.executable, __file__, "--measure", kind, "--dir", str(directory), "--table", table]
    command += ["--spark-master", spark_master]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/cleanroom-bench"))
    parser.add_argument("--sources", default="parquet,csv,postgresql")
    parser.add_argument("--table", default="cleanroom_bench")
    parser.add_argument("--reuse-table", action="store_true", help="skip loading PostgreSQL (already loaded)")
    parser.add_argument("--repeat", type=int, default=1, help="measurements per source")
    parser.add_argument("--spark-master", default="local[*]", help="master of the spark source")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.dir, args.table, args.spark_master)))
        return
    marker = args.dir / "rows"
    if not marker.exists() or marker.read_text() != str(args.rows):
        started = time.perf_counter()
        generate(args.rows, args.dir)
        print(
            f"generated {args.rows:,} rows x 15 columns in {time.perf_counter() - started:.1f} s "
            f"(parquet {os.path.getsize(args.dir / 'data.parquet') / 2**20:.0f} MiB, "
            f"csv {os.path.getsize(args.dir / 'data.csv') / 2**20:.0f} MiB)"
        )
    kinds = [k for k in args.sources.split(",") if k]
    if "postgresql" in kinds:
        dsn = os.environ.get("CLEANROOM_PG_DSN")
        if not dsn:
            print('postgresql: skipped (set CLEANROOM_PG_DSN, e.g. eval "$(bash scripts/start_postgres.sh)")')
            kinds.remove("postgresql")
        elif not args.reuse_table:
            started = time.perf_counter()
            load_postgres(dsn, args.dir, args.table)
            print(f"loaded into PostgreSQL table {args.table} in {time.perf_counter() - started:.1f} s")
    print(
        f"{'source':<11} {'tables':>6} {'rows':>12} {'seconds':>8} {'rows/s':>12} {'peak RSS':>10} "
        f"{'party CPU s':>12} {'server CPU s':>13} {'open s':>7} {'JVM peak RSS':>13} {'again s':>8}"
    )
    for kind in kinds:
        for _ in range(args.repeat):
            result = run_measurement(kind, args.dir, args.table, args.spark_master)
            print(
                f"{kind:<11} {result['tables']:>6.0f} {result['rows']:>12,.0f} {result['seconds']:>8.1f} "
                f"{result['rows'] / result['seconds']:>12,.0f} {result['peak_rss_mib']:>7.0f} MiB "
                f"{result['cpu_s']:>12.1f} {result['server_cpu_s']:>13.1f} {result['open_s']:>7.1f} "
                f"{result['jvm_peak_rss_mib']:>9.0f} MiB {result['again_s']:>8.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
