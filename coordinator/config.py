"""The coordinator's configuration: the collaboration plan file plus its own `[coordinator]` table.

```toml
# ... the plan (see docs/design.md) ...
[coordinator]
id = "coordinator"                   # must equal the plan's `coordinator` and this node's certificate id
ca = "certs/ca.pem"
cert = "certs/coordinator.pem"
key = "certs/coordinator.key"
out = "out/coordinator"              # job record (timings, bytes, privacy report)
call_deadline_s = 120                # deadline of every call to a party
seed = 0                             # optional: seeds synthesis and training (noise never uses it)
train_threads = 1                    # OpenMP threads for model training
job_log = "out/coordinator/job-log.jsonl"  # stages, timings, parties, dropped, bytes, outcome
require_approvals = true             # refuse to start unless every data party's <plan>.<party>.sig verifies
```
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from cleanroom.errors import InvalidInput
from cleanroom.plan import Plan
from cleanroom.schema import Schema
from transport.tls import TlsFiles


@dataclass(frozen=True)
class CoordinatorConfig:
    path: Path
    coordinator_id: str
    tls: TlsFiles
    out: Path
    plan: Plan
    plan_hash: str
    schema: Schema
    call_deadline_s: float = 120.0
    seed: int | None = None
    train_threads: int = 1
    job_log: Path | None = None  # default <out>/job-log.jsonl
    require_approvals: bool = True

    def __post_init__(self) -> None:
        if self.train_threads < 1:
            raise InvalidInput(f"[coordinator] train_threads ({self.train_threads}) must be >= 1")
        if self.call_deadline_s <= 0:
            raise InvalidInput(f"[coordinator] call_deadline_s ({self.call_deadline_s}) must be > 0")
        if self.coordinator_id != self.plan.coordinator:
            raise InvalidInput(
                f"[coordinator] id ({self.coordinator_id!r}) differs from the plan's coordinator "
                f"({self.plan.coordinator!r})"
            )

    @property
    def job_log_path(self) -> Path:
        return self.job_log if self.job_log is not None else self.out / "job-log.jsonl"

    @classmethod
    def load(cls, path: Path) -> CoordinatorConfig:
        path = Path(path).resolve()
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise InvalidInput(f"cannot read collaboration config {path}: {error}") from None
        table = raw.get("coordinator")
        if not isinstance(table, dict):
            raise InvalidInput(f"{path}: missing the [coordinator] table")
        plan = Plan.load(path)
        base = path.parent
        try:
            tls = TlsFiles(base / table["ca"], base / table["cert"], base / table["key"])
            schema = Schema.load(plan.schema_path)
            return cls(
                path=path,
                coordinator_id=table.get("id", "coordinator"),
                tls=tls,
                out=(base / table.get("out", "out/coordinator")).resolve(),
                plan=plan,
                plan_hash=plan.hash,
                schema=schema,
                call_deadline_s=float(table.get("call_deadline_s", 120.0)),
                seed=table.get("seed"),
                train_threads=int(table.get("train_threads", 1)),
                job_log=(base / table["job_log"]).resolve() if "job_log" in table else None,
                require_approvals=bool(table.get("require_approvals", True)),
            )
        except KeyError as error:
            raise InvalidInput(f"{path}: missing key {error}") from None
