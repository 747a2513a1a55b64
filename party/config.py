"""`party.toml`: everything one party node needs, validated on load. Relative paths are relative to the file.

```toml
party_id = "airline"                 # must equal the id in this node's certificate and in the plan
listen = "0.0.0.0:50051"
plan = "collaboration.toml"          # the plan this party approved (hash pinned below)
approved_plans = ["<hex>"]           # plan hashes this party approved; it serves no other plan
output_dir = "results"               # where delivered results are written

[tls]
ca = "certs/ca.pem"
cert = "certs/airline.pem"
key = "certs/airline.key"
identity_key = "certs/airline.ed25519"

[data]
schema = "schema.json"
source = "data/airline.csv"          # or a table, e.g. { kind = "duckdb", path = "...", table = "t" }

[budget]
epsilon = 2.0                        # this dataset's lifetime budget across all plans (or give rho = ...)
delta = 1e-9
ledger = "state/ledger.sqlite"
audit_log = "state/audit.jsonl"      # hash-chained record of every answer and refusal (default: here)
```
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cleanroom.errors import InvalidInput
from transport.tls import TlsFiles


@dataclass(frozen=True)
class PartyConfig:
    party_id: str
    listen: str
    plan: Path
    output_dir: Path
    tls: TlsFiles
    identity_key: Path
    schema: Path
    source: Any
    ledger: Path
    epsilon: float | None = None
    delta: float = 1e-9
    rho: float | None = None
    approved_plans: tuple[str, ...] = ()
    audit_log: Path | None = None
    call_deadline_s: float = 120.0

    def __post_init__(self) -> None:
        if not self.party_id:
            raise InvalidInput("party_id must not be empty")
        if ":" not in self.listen:
            raise InvalidInput(f"listen ({self.listen!r}) must be host:port")
        if (self.epsilon is None) == (self.rho is None):
            raise InvalidInput("[budget] needs exactly one of epsilon (with delta) or rho")
        if self.epsilon is not None and self.epsilon <= 0:
            raise InvalidInput(f"[budget] epsilon ({self.epsilon}) must be > 0")
        if self.rho is not None and self.rho <= 0:
            raise InvalidInput(f"[budget] rho ({self.rho}) must be > 0")
        if not 0 < self.delta < 1:
            raise InvalidInput(f"[budget] delta ({self.delta}) must be in (0, 1)")
        for label, path in (
            ("plan", self.plan),
            ("data.schema", self.schema),
            ("tls.identity_key", self.identity_key),
        ):
            if not path.is_file():
                raise InvalidInput(f"{label} file {path} does not exist")

    @classmethod
    def load(cls, path: Path) -> PartyConfig:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise InvalidInput(f"cannot read party config {path}: {error}") from None
        base = path.parent
        try:
            return cls._from_dict(raw, base)
        except KeyError as error:
            raise InvalidInput(f"party config {path}: missing key {error}") from None

    @classmethod
    def _from_dict(cls, raw: dict[str, Any], base: Path) -> PartyConfig:
        def rel(value: str) -> Path:
            return (base / value).resolve()

        tls, data, budget = raw["tls"], raw["data"], raw["budget"]
        source = data["source"]
        if isinstance(source, str) and not source.startswith(("postgresql://", "postgres://")):
            source = str(rel(source))
        elif isinstance(source, dict) and "path" in source:
            source = {**source, "path": str(rel(source["path"]))}
        return cls(
            party_id=raw["party_id"],
            listen=raw["listen"],
            plan=rel(raw["plan"]),
            output_dir=rel(raw.get("output_dir", "results")),
            tls=TlsFiles(rel(tls["ca"]), rel(tls["cert"]), rel(tls["key"])),
            identity_key=rel(tls["identity_key"]),
            schema=rel(data["schema"]),
            source=source,
            ledger=rel(budget["ledger"]),
            epsilon=budget.get("epsilon"),
            delta=budget.get("delta", 1e-9),
            rho=budget.get("rho"),
            approved_plans=tuple(raw.get("approved_plans", ())),
            audit_log=rel(budget["audit_log"])
            if "audit_log" in budget
            else rel(budget["ledger"]).with_name(rel(budget["ledger"]).stem + "-audit.jsonl"),
            call_deadline_s=float(raw.get("call_deadline_s", 120.0)),
        )
