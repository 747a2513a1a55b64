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

import math
import re
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
        if not self.call_deadline_s > 0:
            raise InvalidInput(f"call_deadline_s ({self.call_deadline_s}) must be > 0")
        for label, path in (
            ("plan", self.plan),
            ("data.schema", self.schema),
            ("tls.identity_key", self.identity_key),
        ):
            if not path.is_file():
                raise InvalidInput(f"{label} file {path} does not exist")

    @classmethod
    def load(cls, path: Path) -> PartyConfig:
        """Read and validate a party.toml; every error is one line naming the file and the field."""
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise InvalidInput(f"cannot read party config {path}: {error}") from None
        try:
            return cls._from_dict(raw, path.parent)
        except InvalidInput as error:
            raise InvalidInput(f"party config {path}: {error}") from None

    @classmethod
    def _from_dict(cls, raw: dict[str, Any], base: Path) -> PartyConfig:
        def rel(value: str) -> Path:
            return (base / value).resolve()

        _check_keys(raw, _TOP_KEYS, "")
        tls, data, budget = (_table(raw, name) for name in ("tls", "data", "budget"))
        for name, table in (("tls", tls), ("data", data), ("budget", budget)):
            _check_keys(table, _SECTION_KEYS[name], f"[{name}] ")
        source = _required(data, "source", (str, dict), "[data] ", "a path or a table")
        if isinstance(source, str) and not source.startswith(("postgresql://", "postgres://")):
            source = str(rel(source))
        elif isinstance(source, dict) and "path" in source:
            path = _text(source, "path", "[data] source.")
            uri = re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", path)  # s3a://..., dbfs:/... (a spark source)
            source = {**source, "path": path if uri else str(rel(path))}
        ledger = rel(_text(budget, "ledger", "[budget] "))
        audit_log = budget.get("audit_log")
        delta = _number(budget, "delta", "[budget] ", default=1e-9)
        deadline = _number(raw, "call_deadline_s", default=120.0)
        assert delta is not None and deadline is not None  # both have defaults
        return cls(
            party_id=_text(raw, "party_id"),
            listen=_text(raw, "listen"),
            plan=rel(_text(raw, "plan")),
            output_dir=rel(_text(raw, "output_dir", default="results")),
            tls=TlsFiles(*(rel(_text(tls, k, "[tls] ")) for k in ("ca", "cert", "key"))),
            identity_key=rel(_text(tls, "identity_key", "[tls] ")),
            schema=rel(_text(data, "schema", "[data] ")),
            source=source,
            ledger=ledger,
            epsilon=_number(budget, "epsilon", "[budget] "),
            delta=delta,
            rho=_number(budget, "rho", "[budget] "),
            approved_plans=_text_list(raw, "approved_plans"),
            audit_log=rel(_text(budget, "audit_log", "[budget] "))
            if audit_log is not None
            else ledger.with_name(ledger.stem + "-audit.jsonl"),
            call_deadline_s=deadline,
        )


_TOP_KEYS = frozenset(
    {"party_id", "listen", "plan", "approved_plans", "output_dir", "call_deadline_s", "tls", "data", "budget"}
)
_SECTION_KEYS = {
    "tls": frozenset({"ca", "cert", "key", "identity_key"}),
    "data": frozenset({"schema", "source"}),
    "budget": frozenset({"epsilon", "delta", "rho", "ledger", "audit_log"}),
}
_MISSING = object()


def _check_keys(table: dict[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise InvalidInput(f"unknown field {where}{unknown[0]} (known: {', '.join(sorted(known))})")


def _table(raw: dict[str, Any], name: str) -> dict[str, Any]:
    table = _required(raw, name, (dict,), "", "a table")
    assert isinstance(table, dict)
    return table


def _required(table: dict[str, Any], key: str, kinds: tuple[type, ...], where: str, what: str) -> Any:
    if key not in table:
        raise InvalidInput(f"missing key {where}{key!r}")
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise InvalidInput(f"{where}{key} ({value!r}) must be {what}")
    return value


def _text(table: dict[str, Any], key: str, where: str = "", default: Any = _MISSING) -> str:
    if key not in table and default is not _MISSING:
        return str(default)
    value = _required(table, key, (str,), where, "a string")
    if not value:
        raise InvalidInput(f"{where}{key} must not be empty")
    return str(value)


def _number(table: dict[str, Any], key: str, where: str = "", default: float | None = None) -> float | None:
    if key not in table:
        return default
    value = _required(table, key, (int, float), where, "a number")
    if not math.isfinite(value):
        raise InvalidInput(f"{where}{key} ({value!r}) must be a finite number")
    return float(value)


def _text_list(table: dict[str, Any], key: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"{key} ({value!r}) must be a list of strings (plan hashes)")
    return tuple(value)
