"""The collaboration plan: one TOML file every party approves (signs) before any job runs under it.

The plan names the members and what each may do, the schema (pinned by hash), the task, the synthesizer and
the privacy parameters. Its identity is `Plan.hash`: SHA-256 of the file's exact bytes, so a change of a
single byte (even whitespace or a comment) makes it a different plan that needs new approvals. A party node
serves only plans whose hash is listed in its own configuration (`require_approved_hash`) and enforces the
abilities named here (`Plan.require`, `Plan.require_coordinator`). Format: docs/governance.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cleanroom.accounting import NoiseLayout
from cleanroom.errors import InvalidInput, NotFound, PermissionDenied
from cleanroom.feasibility import DEFAULT_EVALUATION_SHARE, DEFAULT_SYNTHESIZER, Fields, check_job
from cleanroom.schema import Schema
from cleanroom.secagg.manifest import (
    SecAggManifest,
    required_degree,
    required_neighbour_threshold,
    required_threshold,
    sparse_degree,
    sparse_feasible,
)

RUN_JOBS = "run_jobs"
RECEIVE_RESULTS = "receive_results"
RECEIVE_SYNTHETIC_DATA = "receive_synthetic_data"
RECEIVE_MODEL = "receive_model"
READ_AUDIT_LOG = "read_audit_log"
ABILITIES = frozenset({RUN_JOBS, RECEIVE_RESULTS, RECEIVE_SYNTHETIC_DATA, RECEIVE_MODEL, READ_AUDIT_LOG})
# Which ability a member needs to be sent each kind of job output.
OUTPUT_ABILITIES = {
    "report": RECEIVE_RESULTS,
    "synthetic_data": RECEIVE_SYNTHETIC_DATA,
    "model": RECEIVE_MODEL,
}
RESULT_FORMATS = frozenset({"csv", "parquet"})
MODEL_FORMATS = frozenset({"onnx"})
TASKS = frozenset({"classification", "regression"})
DEFAULT_MAX_TABLE_CELLS = 1_000_000
MAX_TABLE_CELLS_LIMIT = 8 * 1024 * 1024  # 8 bytes a cell: one masked vector in a 64 MiB gRPC message
SYNTHESIZERS = frozenset({"adaptive", "mst"})  # cleanroom.synth.planners.PLANNERS
PARTITIONINGS = frozenset({"horizontal", "vertical"})  # vertical: docs/vertical.md

_HEX = frozenset("0123456789abcdef")
_MEMBER_KEYS = frozenset({"id", "address", "cert_sha256", "identity_key", "abilities"})


def _is_sha256_hex(text: str) -> bool:
    return len(text) == 64 and set(text) <= _HEX


def decode_identity_key(text: str, where: str) -> Ed25519PublicKey:
    """An Ed25519 public key from base64 of its raw 32 bytes; `where` names the file and field on error."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where}: identity_key is not valid base64") from None
    if len(raw) != 32:
        raise InvalidInput(f"{where}: identity_key must be 32 raw bytes (Ed25519), got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True)
class Member:
    """One member of the collaboration; members with an address are data parties (run a party node)."""

    id: str
    address: str = ""
    cert_sha256: str = ""
    identity_key: str = ""
    abilities: frozenset[str] = frozenset()
    source: str = field(default="<plan>", compare=False)

    def __post_init__(self) -> None:
        where = f"{self.source}: member {self.id!r}"
        if not self.id or not self.id.strip() or any(c in self.id for c in "/\\\0"):
            raise InvalidInput(f"{self.source}: member id ({self.id!r}) must be a non-empty name, no slashes")
        unknown = sorted(self.abilities - ABILITIES)
        if unknown:
            raise InvalidInput(f"{where}: unknown abilities {unknown} (known: {sorted(ABILITIES)})")
        if self.cert_sha256 and not _is_sha256_hex(self.cert_sha256):
            raise InvalidInput(f"{where}: cert_sha256 ({self.cert_sha256!r}) must be 64 lowercase hex digits")
        if self.identity_key:
            decode_identity_key(self.identity_key, where)
        if self.is_data_party and not (self.cert_sha256 and self.identity_key):
            raise InvalidInput(f"{where}: a data party (has an address) needs cert_sha256 and identity_key")

    @property
    def is_data_party(self) -> bool:
        return bool(self.address)

    def public_key(self) -> Ed25519PublicKey:
        if not self.identity_key:
            raise NotFound(f"{self.source}: member {self.id!r} has no identity_key")
        return decode_identity_key(self.identity_key, f"{self.source}: member {self.id!r}")


@dataclass(frozen=True)
class Plan:
    """A validated collaboration plan; build it with `Plan.load(path)` or `Plan.parse(data, path)`."""

    source: str
    hash: str
    collaboration_id: str
    schema_path: Path
    schema_hash: str
    target: str
    task: str
    members: tuple[Member, ...]
    coordinator: str
    epsilon: float
    delta: float
    max_epsilon_per_job: float
    synthesizer: str = DEFAULT_SYNTHESIZER
    synthesizer_settings: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    synthetic_rows: int = 0
    max_jobs: int = 0
    max_table_cells: int = DEFAULT_MAX_TABLE_CELLS  # cap on the cells of any one marginal a party answers
    min_parties: int = 2
    dropout_tolerance: int = 0
    colluders: int = 0
    threshold: int = 0
    masking_neighbours: int = 0  # degree k of the secure-aggregation masking graph; 0 = automatic
    max_membership_inference_score: float = 0.8
    evaluation_share: float = DEFAULT_EVALUATION_SHARE  # of each job's budget: utility, fidelity, attack
    result_formats: tuple[str, ...] = ("csv",)
    model_format: str = "onnx"
    retention_days: int = 30
    partitioning: str = "horizontal"  # "vertical": the parties hold different columns (docs/vertical.md)
    sections: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "synthesizer_settings", MappingProxyType(dict(self.synthesizer_settings)))
        object.__setattr__(self, "sections", MappingProxyType(dict(self.sections)))
        self._check_identity()
        self._check_privacy()
        self._check_parties()
        self._check_outputs()

    # ---------------------------------------------------------------- validation
    def _fail(self, message: str) -> InvalidInput:
        return InvalidInput(f"{self.source}: {message}")

    def _check_identity(self) -> None:
        if not _is_sha256_hex(self.hash):
            raise self._fail(f"plan hash ({self.hash!r}) must be 64 lowercase hex digits")
        if not self.collaboration_id.strip():
            raise self._fail("collaboration_id must not be empty")
        if not _is_sha256_hex(self.schema_hash):
            raise self._fail(f"schema_hash ({self.schema_hash!r}) must be 64 lowercase hex digits")
        if not self.target.strip():
            raise self._fail("target must name the schema column to predict")
        if self.task not in TASKS:
            raise self._fail(f"task ({self.task!r}) must be one of {sorted(TASKS)}")
        if self.synthesizer not in SYNTHESIZERS:
            raise self._fail(f"synthesizer ({self.synthesizer!r}) must be one of {sorted(SYNTHESIZERS)}")
        if not self.coordinator.strip():
            raise self._fail("coordinator must name the coordinator's certificate identity")
        if self.partitioning not in PARTITIONINGS:
            raise self._fail(f"partitioning ({self.partitioning!r}) must be one of {sorted(PARTITIONINGS)}")

    def _check_privacy(self) -> None:
        if not 0 < self.epsilon < float("inf"):
            raise self._fail(f"epsilon ({self.epsilon}) must be > 0 and finite")
        if not 0 < self.delta < 1:
            raise self._fail(f"delta ({self.delta}) must be in (0, 1)")
        if not 0 < self.max_epsilon_per_job <= self.epsilon:
            raise self._fail(
                f"max_epsilon_per_job ({self.max_epsilon_per_job}) must be in (0, epsilon={self.epsilon}]"
            )
        if self.max_jobs < 0:
            raise self._fail(f"max_jobs ({self.max_jobs}) must be >= 0 (0 = no limit)")
        if not 1 <= self.max_table_cells <= MAX_TABLE_CELLS_LIMIT:
            raise self._fail(
                f"max_table_cells ({self.max_table_cells}) must be in [1, {MAX_TABLE_CELLS_LIMIT}] (one "
                "masked vector must fit in a 64 MiB message)"
            )
        if not 0.5 <= self.max_membership_inference_score <= 1:
            raise self._fail(
                f"max_membership_inference_score ({self.max_membership_inference_score}) must be in [0.5, 1]"
            )
        if not 0 < self.evaluation_share < 1:
            raise self._fail(f"evaluation_share ({self.evaluation_share}) must be in (0, 1)")
        if self.synthetic_rows < 0:
            raise self._fail(f"synthetic_rows ({self.synthetic_rows}) must be >= 0 (0 = noisy total count)")

    def _check_parties(self) -> None:
        for name in ("id", "cert_sha256", "identity_key"):
            values = [getattr(m, name) for m in self.members if getattr(m, name)]
            duplicates = sorted({v for v in values if values.count(v) > 1})
            if duplicates:
                raise self._fail(f"member {name}s {duplicates} are not unique")
        n = len(self.data_parties)
        if n < 1:
            raise self._fail("members: at least one member needs an address (a data party)")
        coordinator = next((m for m in self.members if m.id == self.coordinator), None)
        if coordinator is None or RUN_JOBS not in coordinator.abilities:
            state = "is not a member" if coordinator is None else "lacks the run_jobs ability"
            raise self._fail(
                f"coordinator {self.coordinator!r} {state}; add a [[members]] entry with id = "
                f"{self.coordinator!r} and abilities = [\"run_jobs\"] (parties refuse any other caller)"
            )
        for name in ("min_parties", "dropout_tolerance", "colluders", "threshold", "masking_neighbours"):
            if getattr(self, name) < 0:
                raise self._fail(f"{name} ({getattr(self, name)}) must be >= 0")
        if self.min_parties < 1:
            raise self._fail(f"min_parties ({self.min_parties}) must be >= 1")
        if self.min_parties > n - self.dropout_tolerance:
            raise self._fail(
                f"min_parties ({self.min_parties}) must be <= data parties - dropout_tolerance "
                f"= {n} - {self.dropout_tolerance} = {n - self.dropout_tolerance}"
            )
        if self.threshold and not (2 * self.threshold > n and self.threshold <= n):
            raise self._fail(f"threshold ({self.threshold}) must be > n/2 = {n / 2} and <= n = {n}")
        if self.n_min < 1:
            raise self._fail(
                f"data parties ({n}) - dropout_tolerance ({self.dropout_tolerance}) - colluders "
                f"({self.colluders}) must be >= 1"
            )
        if self.threshold and self.threshold < required_threshold(n, self.colluders):
            raise self._fail(
                f"threshold ({self.threshold}) must be >= {required_threshold(n, self.colluders)} "
                f"to tolerate {self.colluders} colluders (t > (n + c)/2 and t > c)"
            )
        if self.effective_threshold > n - self.dropout_tolerance:
            raise self._fail(
                f"threshold ({self.effective_threshold}) must be <= data parties - dropout_tolerance "
                f"= {n - self.dropout_tolerance}, or tolerated dropouts could not be unmasked"
            )
        self._check_masking_graph(n)

    def _check_masking_graph(self, n: int) -> None:
        """An explicit sparse degree must keep the plan's dropout and collusion promises (docs/secagg.md)."""
        k = self.masking_neighbours
        if k == 0 or k >= n - 1:
            return
        missing, c = n - self.secagg_quorum, self.colluders
        if not sparse_feasible(k, missing, c):
            raise self._fail(
                f"masking_neighbours ({k}) must be even, >= {max(2, required_degree(missing, c))} (colluders "
                f"{c} + max(2 x missing parties {missing}, {missing} + 1)) and leave "
                f"floor((k + 1 + {c})/2) + 1 <= k + 1 - {missing} shareholders; or >= {n - 1} for the "
                "complete graph"
            )

    def _check_outputs(self) -> None:
        if not self.result_formats:
            raise self._fail("result_formats must list at least one of ['csv', 'parquet']")
        bad = sorted(set(self.result_formats) - RESULT_FORMATS)
        if bad:
            raise self._fail(f"result_formats {bad} unknown (known: {sorted(RESULT_FORMATS)})")
        if self.model_format not in MODEL_FORMATS:
            raise self._fail(f"model_format ({self.model_format!r}) must be one of {sorted(MODEL_FORMATS)}")
        if self.retention_days < 1:
            raise self._fail(f"retention_days ({self.retention_days}) must be >= 1")

    # ---------------------------------------------------------------- queries
    @property
    def data_parties(self) -> tuple[Member, ...]:
        """Members with an address, in plan order: the parties that hold data and run a party node."""
        return tuple(m for m in self.members if m.is_data_party)

    @property
    def effective_threshold(self) -> int:
        """Secure-aggregation threshold t: the explicit value, or the smallest t safe against `colluders`.

        With c parties colluding with a lying coordinator, t must exceed (n + c)/2 and c
        (`cleanroom.secagg.manifest.required_threshold`); with c = 0 that is floor(n/2)+1.
        """
        return self.threshold or required_threshold(len(self.data_parties), self.colluders)

    @property
    def min_survivors(self) -> int:
        """Fewest parties an aggregation round may end with: below it the n_min noise promise fails.

        `max(min_parties, data parties - dropout_tolerance)`; the secure-aggregation quorum is at least this.
        """
        return max(self.min_parties, len(self.data_parties) - self.dropout_tolerance)

    @property
    def n_min(self) -> int:
        """Honest survivors the noise is calibrated for: data parties - dropout_tolerance - colluders.

        Holds for the sparse masking graph too: its degree k >= colluders + max(2m, m + 1), m = n - quorum,
        keeps the coordinator to the total of the honest survivors (docs/secagg.md).
        """
        return len(self.data_parties) - self.dropout_tolerance - self.colluders

    @property
    def noise_layout(self) -> NoiseLayout:
        """How every aggregation round's noise is drawn and, once the survivors are signed, trimmed (a
        vertical job's rounds are not secure sums: one draw each)."""
        n, c = len(self.data_parties), self.colluders
        if self.partitioning == "vertical":
            return NoiseLayout(n, self.n_min, c)
        return NoiseLayout.for_plan(n, self.dropout_tolerance, c)

    @property
    def secagg_quorum(self) -> int:
        """Fewest parties a secure-aggregation stage may end with: max(threshold, min_survivors)."""
        return max(self.effective_threshold, self.min_survivors)

    @property
    def masking_degree(self) -> int:
        """Degree k of the masking graph, 0 for the complete graph.

        `masking_neighbours` 0 (default): `sparse_degree(n, n - quorum, colluders)`, sparse only where k <=
        (n - 1)/2 and the plan's dropouts and colluders are met; an explicit value >= n - 1: complete.
        """
        n = len(self.data_parties)
        if n < 2:
            return 0
        if self.masking_neighbours == 0:
            return sparse_degree(n, n - self.secagg_quorum, self.colluders)
        return 0 if self.masking_neighbours >= n - 1 else self.masking_neighbours

    def secagg_manifest(self, schema_hash: str) -> SecAggManifest:
        """The secure-aggregation manifest: the data parties in plan order with their identity keys."""
        parties = self.data_parties
        return SecAggManifest(
            collaboration_id=self.collaboration_id,
            parties=tuple(m.id for m in parties),
            identity_keys=tuple(m.public_key() for m in parties),
            min_parties=self.min_survivors,
            schema_hash=schema_hash,
            threshold=self.effective_threshold,
            coordinator_id=self.coordinator,
            neighbours=self.masking_degree,
            neighbour_threshold=self._neighbour_threshold(),
        )

    def _neighbour_threshold(self) -> int:
        k = self.masking_degree
        return required_neighbour_threshold(k, self.colluders) if k else 0

    def member(self, member_id: str) -> Member:
        for m in self.members:
            if m.id == member_id:
                return m
        raise NotFound(f"{self.source}: no member {member_id!r} in plan {self.hash}")

    def member_by_cert(self, cert_sha256: str) -> Member:
        """The member whose TLS certificate has this SHA-256 (hex of DER)."""
        for m in self.members:
            if m.cert_sha256 and m.cert_sha256 == cert_sha256.lower():
                return m
        raise PermissionDenied(f"certificate {cert_sha256} belongs to no member of plan {self.hash}")

    def can(self, member_id: str, ability: str) -> bool:
        if ability not in ABILITIES:
            raise InvalidInput(f"unknown ability {ability!r} (known: {sorted(ABILITIES)})")
        return any(m.id == member_id and ability in m.abilities for m in self.members)

    def require(self, member_id: str, ability: str) -> None:
        """Raise PermissionDenied unless `member_id` is a member holding `ability`."""
        if not self.can(member_id, ability):
            raise PermissionDenied(f"member {member_id!r} lacks ability {ability!r} in plan {self.hash}")

    def require_coordinator(self, identity: str) -> None:
        if identity != self.coordinator:
            raise PermissionDenied(
                f"identity {identity!r} is not the coordinator ({self.coordinator!r}) of plan {self.hash}"
            )

    def members_with(self, ability: str) -> tuple[Member, ...]:
        return tuple(m for m in self.members if ability in m.abilities)

    def recipients(self, output_kind: str) -> tuple[Member, ...]:
        """Members allowed to receive `report` (metrics), `synthetic_data` or `model` outputs."""
        if output_kind not in OUTPUT_ABILITIES:
            raise InvalidInput(f"unknown output kind {output_kind!r} (known: {sorted(OUTPUT_ABILITIES)})")
        return self.members_with(OUTPUT_ABILITIES[output_kind])

    def describe(self) -> str:
        """A readable summary for `cleanroom plan show`."""
        lines = [
            f"plan {self.source}", f"  hash {self.hash}", f"  collaboration {self.collaboration_id}",
            f"  task {self.task} on target {self.target!r}, synthesizer {self.synthesizer}",
            f"  privacy epsilon {self.epsilon} delta {self.delta} (per job <= {self.max_epsilon_per_job})",
            f"  parties {len(self.data_parties)}, min {self.min_parties}, dropout tolerance "
            f"{self.dropout_tolerance}, colluders {self.colluders}, threshold {self.effective_threshold}, "
            f"n_min {self.n_min}", f"  noise {self._noise_summary()}",
            f"  masking graph {self._graph_summary()}",
            f"  coordinator {self.coordinator!r}; retention {self.retention_days} days; tables <= "
            f"{self.max_table_cells} cells",
        ]  # fmt: skip
        for m in self.members:
            where = m.address or "(no node)"
            lines.append(f"  member {m.id} at {where}: {', '.join(sorted(m.abilities)) or 'no abilities'}")
        return "\n".join(lines) + "\n"

    def _noise_summary(self) -> str:
        layout, n = self.noise_layout, len(self.data_parties)
        if layout.shares == 1:
            return "one draw per party, calibrated for n_min honest parties"
        return (
            f"{layout.shares} draws per party; a survivor list of all {n} parties keeps {layout.kept(n)} "
            f"(the noise of a plan without dropout tolerance), a shorter one keeps more (docs/privacy.md)"
        )

    def _graph_summary(self) -> str:
        k = self.masking_degree
        if not k:
            return "complete"
        return f"sparse: {k} neighbours per party, neighbourhood threshold {self._neighbour_threshold()}"

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | Path, *, check_schema: bool = True) -> Plan:
        """Read, hash and validate a plan file; `check_schema` also checks the schema file's hash."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"plan file {path} does not exist") from None
        return cls.parse(data, path, check_schema=check_schema)

    @classmethod
    def parse(cls, data: bytes, path: str | Path, *, check_schema: bool = True) -> Plan:
        """Validate plan bytes; `path` names the source and anchors the relative schema path."""
        path = Path(path)
        source = str(path)
        try:
            doc = tomllib.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise InvalidInput(f"{source}: not a valid UTF-8 TOML file: {exc}") from None
        plan = cls(hash=hashlib.sha256(data).hexdigest(), **_plan_kwargs(doc, path))
        if check_schema:
            plan.check_schema()
        return plan

    def check_schema(self) -> None:
        """The schema file must exist and hash to `schema_hash`, and the job must be feasible on it.

        Feasible: target and task fit the schema, synthetic_rows and synthesizer_settings are usable, and
        `max_epsilon_per_job` is within the noise floor (`cleanroom.feasibility`), all before any round.
        """
        if not self.schema_path.is_file():
            raise NotFound(f"{self.source}: schema file {self.schema_path} does not exist")
        schema = Schema.load(self.schema_path)
        actual = schema.hash()
        if actual != self.schema_hash:
            raise InvalidInput(
                f"{self.source}: schema_hash ({self.schema_hash}) does not match the hash of "
                f"{self.schema_path} ({actual})"
            )
        try:
            check_job(
                schema, target=self.target, task=self.task, epsilon=self.max_epsilon_per_job,
                delta=self.delta, n_min=self.n_min, n_parties=len(self.data_parties),
                evaluation_share=self.evaluation_share, synthetic_rows=self.synthetic_rows,
                settings=self.synthesizer_settings, fields=Fields(schema=str(self.schema_path.name)),
                synthesizer="mst" if self.partitioning == "vertical" else self.synthesizer,
            )  # fmt: skip
        except InvalidInput as error:
            raise self._fail(str(error)) from None


def require_approved_hash(plan_hash: str, approved: Iterable[str]) -> None:
    """A party node's gate: refuse any plan whose hash is not in its configured approved list."""
    if plan_hash.lower() not in {h.lower() for h in approved}:
        shown = plan_hash if len(plan_hash) <= 64 else f"{plan_hash[:64]}...({len(plan_hash)} chars)"
        raise PermissionDenied(f"plan {shown} is not approved by this party (not in its approved_plans)")


def schema_file_hash(path: Path) -> str:
    """`Schema.hash()` of the schema file (the normalised schema, so formatting changes do not matter)."""
    return Schema.load(path).hash()


# -------------------------------------------------------------------- TOML reading
_TOP_KEYS = {
    "collaboration_id": str, "schema": str, "schema_hash": str, "target": str, "task": str,
    "synthesizer": str, "synthetic_rows": int, "max_jobs": int, "max_table_cells": int, "epsilon": float,
    "delta": float,
    "max_epsilon_per_job": float, "min_parties": int, "dropout_tolerance": int, "colluders": int,
    "threshold": int, "masking_neighbours": int, "max_membership_inference_score": float, "model_format": str,
    "retention_days": int, "evaluation_share": float, "partitioning": str,
}  # fmt: skip
_REQUIRED = ("collaboration_id", "schema", "schema_hash", "target", "task", "epsilon", "delta", "coordinator")


def _typed(value: Any, kind: type, where: str) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise InvalidInput(f"{where} ({value!r}) must be of type {kind.__name__}")
    return value


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"{where} ({value!r}) must be a list of strings")
    return tuple(value)


def _plan_kwargs(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    source = str(path)
    missing = [k for k in _REQUIRED if k not in doc]
    if missing:
        raise InvalidInput(f"{source}: missing required fields {missing}")
    kwargs: dict[str, Any] = {"source": source}
    sections: dict[str, Any] = {}
    for key, value in doc.items():
        if key in _TOP_KEYS:
            kwargs[key] = _typed(value, _TOP_KEYS[key], f"{source}: {key}")
        elif key not in ("coordinator", "members", "result_formats", "synthesizer_settings"):
            if not isinstance(value, dict):
                raise InvalidInput(f"{source}: unknown field {key!r}")
            sections[key] = value
    kwargs["coordinator"], coordinator_table = _coordinator(doc["coordinator"], source)
    if coordinator_table is not None:
        sections["coordinator"] = coordinator_table
    kwargs["schema_path"] = path.parent / kwargs.pop("schema")
    if "result_formats" in doc:
        kwargs["result_formats"] = _str_list(doc["result_formats"], f"{source}: result_formats")
    settings = doc.get("synthesizer_settings", {})
    if not isinstance(settings, dict):
        raise InvalidInput(f"{source}: synthesizer_settings must be a table")
    kwargs["synthesizer_settings"] = settings
    kwargs.setdefault("max_epsilon_per_job", kwargs["epsilon"])
    kwargs["members"] = _members(doc.get("members", []), source)
    kwargs["sections"] = sections
    return kwargs


def _coordinator(value: Any, source: str) -> tuple[str, dict[str, Any] | None]:
    """`coordinator = "id"`, or a `[coordinator]` table (the coordinator's own settings) with an `id`."""
    if isinstance(value, str):
        return value, None
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"], value
    raise InvalidInput(f"{source}: coordinator must be an identity string or a table with a string 'id'")


def _members(value: Any, source: str) -> tuple[Member, ...]:
    if not isinstance(value, list) or not value:
        raise InvalidInput(f"{source}: members must be a non-empty array of [[members]] tables")
    members = []
    for index, table in enumerate(value):
        where = f"{source}: members[{index}]"
        if not isinstance(table, dict):
            raise InvalidInput(f"{where} must be a table")
        unknown = sorted(set(table) - _MEMBER_KEYS)
        if unknown:
            raise InvalidInput(f"{where}: unknown fields {unknown}")
        if "id" not in table:
            raise InvalidInput(f"{where}: missing id")
        names = sorted(_MEMBER_KEYS - {"abilities"})
        fields = {k: _typed(table[k], str, f"{where}.{k}") for k in names if k in table}
        abilities = frozenset(_str_list(table.get("abilities", []), f"{where}.abilities"))
        members.append(Member(abilities=abilities, source=source, **fields))
    return tuple(members)
