"""The small surface of the core package (`cleanroom.*`, `party.sources`) the nodes call, in one place.

Party and coordinator code goes through these functions so that integrating a core module, or following a
rename in it, is a change to this file only. Nothing here implements core logic.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np


def load_plan(path: Path) -> Any:
    from cleanroom.plan import Plan

    return Plan.load(path)


def load_schema(path: Path) -> Any:
    from cleanroom.schema import Schema

    return Schema.load(path)


def schema_hash(schema: Any) -> str:
    return str(schema.hash())


def open_source(spec: Any, schema: Any) -> Any:
    """The party's data source (`party.sources` once it lands, else the in-memory pandas stand-in).

    `spec` is the party.toml `[data] source` value: a file path, or a table of `party.sources` keys.
    """
    try:
        from party.sources import SourceSpec
        from party.sources import open_source as real_open_source
    except ImportError:
        from party.local_source import open_source as local_open_source

        return local_open_source(spec, schema)
    table = {"path": spec} if isinstance(spec, str) else dict(spec)
    return real_open_source(SourceSpec.from_config(table), schema)


def session_id(collaboration_id: str, round_index: int, plan_hash: str) -> bytes:
    from cleanroom.secagg.manifest import session_id as real_session_id

    return bytes(real_session_id(collaboration_id, round_index, plan_hash))


def party_noise(sigma_party2: Fraction, size: int) -> np.ndarray:
    """This party's share of distributed discrete Gaussian noise (refuses sigma_party < 2)."""
    from cleanroom.noise import party_noise_share

    return np.asarray(party_noise_share(size, sigma_party2), dtype=np.int64)


def release_rho(n_tables: int, sigma_party2: Fraction, n_min: int, n_parties: int, cells: int) -> float:
    """zCDP of one round: K tables of sensitivity 1 (L1 = K, L2 = sqrt K), n_min honest shares, with tau."""
    from cleanroom.accounting import DistributedGaussian

    noise = DistributedGaussian(sigma_party2 * n_min, n_parties, n_min)
    return float(noise.rho(sensitivity_l1=n_tables, sensitivity_l2=n_tables**0.5, dim=max(1, cells)))


def rho_for(epsilon: float, delta: float) -> float:
    from cleanroom.accounting import cdp_rho

    return float(cdp_rho(epsilon, delta))


def epsilon_for(rho: float, delta: float) -> float:
    from cleanroom.accounting import cdp_eps

    return float(cdp_eps(rho, delta))


def open_ledger(path: Path, total_rho: float) -> Any:
    from cleanroom.ledger import Ledger

    return Ledger(path, total_rho)


def flatten_tables(tables: list[np.ndarray]) -> np.ndarray:
    from cleanroom.marginals import flatten_tables as real_flatten

    return np.asarray(real_flatten(tables), dtype=np.int64)


def split_vector(vector: np.ndarray, domain: Any, cliques: list[tuple[str, ...]]) -> list[np.ndarray]:
    from cleanroom.marginals import split_vector as real_split

    return list(real_split(vector, domain, cliques))


def mst_planner(domain: Any, rho_total: float, settings: dict[str, Any] | None = None) -> Any:
    from cleanroom.synth import MSTPlanner

    return MSTPlanner(domain, rho_total, **dict(settings or {}))


def measurement(clique: tuple[str, ...], noisy_values: np.ndarray, stddev: float) -> Any:
    from cleanroom.measurement import Measurement

    return Measurement(clique, noisy_values, stddev)


def estimate(planner: Any, measurements: list[Any]) -> Any:
    return planner.estimate(measurements)


def approved(plan_hash: str, approved_plans: tuple[str, ...]) -> None:
    """Raise PermissionDenied unless the party's own configuration lists this plan hash."""
    from cleanroom.plan import require_approved_hash

    require_approved_hash(plan_hash, approved_plans)


def audit_log(path: Path) -> Any:
    from cleanroom.audit import AuditLog

    return AuditLog(path)


def job_log(path: Path) -> Any:
    from cleanroom.joblog import JobLog

    return JobLog(path)


def decode(schema: Any, codes: np.ndarray, rng: np.random.Generator) -> Any:
    from cleanroom.encoding import decode as real_decode

    return real_decode(schema, codes, rng)


def column_kinds(schema: Any) -> dict[str, str]:
    """Column name -> `numerical` | `categorical` | `identifier`, in schema order."""
    return {c.name: c.type for c in schema.columns}


def sample_dataset(n_rows: int, seed: int) -> tuple[dict[str, Any], Any, str, str]:
    """The project's own demo data: (schema as JSON dict, DataFrame, target column, task)."""
    from cleanroom import sample_data

    frame = sample_data.generate(n_rows, seed=seed)
    return sample_data.sample_schema().to_dict(), frame, sample_data.TARGET, "classification"


def secagg_manifest(plan: Any, schema_hash_hex: str) -> Any:
    """The secure-aggregation manifest of a plan: its data parties in plan order with their identity keys."""
    from cleanroom.secagg.manifest import SecAggManifest

    parties = tuple(plan.data_parties)
    return SecAggManifest(
        collaboration_id=plan.collaboration_id,
        parties=tuple(m.id for m in parties),
        identity_keys=tuple(m.public_key() for m in parties),
        min_parties=int(plan.min_survivors),
        schema_hash=schema_hash_hex,
        threshold=int(plan.effective_threshold),
        coordinator_id=plan.coordinator,
    )


def secagg_party(manifest: Any, party_id: str, identity_key: Any, sid: bytes, reveal_record: Any) -> Any:
    from cleanroom.secagg.party import SecAggParty

    return SecAggParty(manifest, party_id, identity_key, sid, reveal_record)


def secagg_server(manifest: Any, sid: bytes, vector_length: int) -> Any:
    from cleanroom.secagg.server import SecAggServer

    return SecAggServer(manifest, sid, vector_length)


def reveal_record(path: Path) -> Any:
    """Durable record of which share kind was revealed per party and session (never both)."""
    from cleanroom.secagg.reveal import SqliteRevealRecord

    return SqliteRevealRecord(path)
