"""One party's side of a vertical job (pure: no grpc, no ledger; `party/vertical.py` adds those).

Per job: `setup` (fresh PSI secret and Paillier key, signed PSI list), `blind` (raise the other's list, for
the coordinator), `encrypted_list` (this party's entry vectors, encrypted once per job), `align` (check the
coordinator's map and keep the other's list). Per round: `aggregate` (sums of the other's ciphertexts per
cell of this party's columns, plus this party's noise encrypted under the other's key) and `release`
(decrypt the other's aggregate, add this party's noise, return the tables). Nothing here ever sends a key, a
value, a count or a membership bit in the clear; see docs/vertical.md for the per-record sensitivity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cleanroom.domain import Clique, Domain
from cleanroom.errors import PreconditionFailed, ProtocolAbort
from cleanroom.noise import party_noise_share
from cleanroom.vertical import psi
from cleanroom.vertical.layout import (
    NOISE_BOUND,
    OFFSET,
    SIGMA_EXTRA2,
    SLOTS,
    EntryLayout,
    Full,
    Packed,
    RoundLayout,
    pack,
    unpack,
)
from cleanroom.vertical.messages import (
    AggregateReply,
    BlindReply,
    EncryptedList,
    SetupReply,
    VerticalRoundRequest,
    sign,
    verify,
)
from cleanroom.vertical.paillier import PaillierPrivate, PaillierPublic, PlainScheme, PublicKey
from cleanroom.vertical.spec import MAX_ROWS_LIMIT, VerticalSpec

Noise = Callable[[int, Fraction], npt.NDArray[np.int64]]


def discrete_gaussian_noise(size: int, sigma2: Fraction) -> npt.NDArray[np.int64]:
    return party_noise_share(size, sigma2)


@dataclass
class VerticalJob:
    """This party's state for one job. `keys` are normalised join keys, `codes` its own columns' codes
    (columns in `spec.columns[party]` order), one row per record."""

    party: str
    spec: VerticalSpec
    domain: Domain
    collaboration_id: str
    sid: bytes  # the job's setup session (messages.setup_sid)
    identity_key: Ed25519PrivateKey
    peer_key: Ed25519PublicKey
    keys: list[str]
    codes: npt.NDArray[np.integer]
    scheme_factory: Callable[[], Any] = PaillierPrivate.generate
    noise: Noise = discrete_gaussian_noise
    scheme: Any = None
    secret: bytes = b""
    blinded: psi.BlindedList | None = None
    positions: list[int] = field(default_factory=list)
    mine: EncryptedList | None = None
    peer_scheme: Any = None
    peer_ciphertexts: list[list[Any]] = field(default_factory=list)
    mapping: npt.NDArray[np.uint32] | None = None

    @property
    def other(self) -> str:
        return self.spec.other(self.party)

    # ---- setup ----------------------------------------------------------------------------------------

    def setup(self) -> SetupReply:
        if self.blinded is not None:
            raise PreconditionFailed(f"party {self.party}: the job's PSI list was already sent")
        self.secret = psi.random_scalar()
        self.scheme = self.scheme_factory()
        bound = self.spec.max_rows[self.party]
        self.blinded = psi.blind_keys(self.collaboration_id, self.keys, bound, self.secret)
        public = _public_bytes(self.scheme)
        data = self.blinded.to_bytes()
        signature = sign(self.identity_key, "setup", self.sid, self.party, public, data)
        return SetupReply(self.sid, self.party, public, data, signature)

    def blind(self, other: SetupReply) -> BlindReply:
        """Check the other's signed list and key; raise its list to this party's secret."""
        if self.blinded is None:
            raise PreconditionFailed(f"party {self.party}: setup has not run")
        if other.sender != self.other or other.sid != self.sid:
            raise ProtocolAbort(f"party {self.party}: PSI list from {other.sender!r} is not the peer's")
        verify(
            self.peer_key, other.signature, "setup", self.sid, other.sender, other.public_key, other.blinded
        )
        self.peer_scheme = _peer_scheme(self.scheme, other.public_key)
        count = self.spec.max_rows[self.other]
        doubly = psi.raise_list(other.blinded, count, self.secret, f"PSI list of {other.sender}")
        return BlindReply(self.sid, self.party, doubly)

    def encrypted_list(self) -> EncryptedList:
        """This party's entry vectors at secretly shuffled positions, dummies and padding encrypting 0."""
        if self.blinded is None:
            raise PreconditionFailed(f"party {self.party}: setup has not run")
        if self.mine is None:
            self.mine = self._encrypt_list()
        return self.mine

    def _encrypt_list(self) -> EncryptedList:
        assert self.blinded is not None
        size = self.spec.list_size(self.party)
        order = psi.secret_permutation(size)
        self.positions = order[: len(self.blinded.points)]
        layout = EntryLayout.for_party(self.spec, self.domain, self.party)
        plain = layout.plaintexts(self.codes)
        per_entry: list[int] = [-1] * size
        for entry, record in enumerate(self.blinded.record_of):
            per_entry[self.positions[entry]] = record
        ciphertexts = [
            [self.scheme.encrypt_own(plain[t][r] if r >= 0 else 0) for r in per_entry]
            for t in range(layout.n_ciphertexts)
        ]
        data = b"".join(self.scheme.encode(row) for row in ciphertexts)
        n_ct = layout.n_ciphertexts
        signature = sign(self.identity_key, "encrypted-list", self.sid, self.party, size, n_ct, data)
        where = np.asarray(self.positions, dtype="<u4").tobytes()
        return EncryptedList(self.sid, self.party, size, n_ct, data, signature, where)

    def align(self, other: EncryptedList, mapping: npt.NDArray[np.integer]) -> None:
        """Keep the other's signed list and this party's map after checking both."""
        if self.peer_scheme is None or self.blinded is None:
            raise PreconditionFailed(f"party {self.party}: the PSI step has not run")
        if self.mapping is not None:
            raise PreconditionFailed(f"party {self.party}: the job is already aligned")
        where = f"party {self.party}, alignment"
        size = self.spec.list_size(self.other)
        n_ct = EntryLayout.for_party(self.spec, self.domain, self.other).n_ciphertexts
        if other.sender != self.other or other.sid != self.sid or (other.entries, other.n_ciphertexts) != (
            size, n_ct,
        ):  # fmt: skip
            raise ProtocolAbort(f"{where}: the encrypted list is not the peer's list for this job")
        verify(
            self.peer_key, other.signature, "encrypted-list", self.sid, other.sender, size, n_ct, other.data
        )
        mapping = np.asarray(mapping)
        psi.check_map(mapping, self.spec.max_rows[self.party], size, where)
        cts = self.peer_scheme.decode(other.data, size * n_ct, f"encrypted list of {other.sender}")
        self.peer_ciphertexts = [cts[t * size : (t + 1) * size] for t in range(n_ct)]
        self.mapping = mapping.astype(np.uint32)

    # ---- rounds ---------------------------------------------------------------------------------------

    def joined(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(record, position in the other's list) of every record that has a key (the map's real part)."""
        if self.mapping is None or self.blinded is None:
            raise PreconditionFailed(f"party {self.party}: the job is not aligned")
        pairs = [(r, int(self.mapping[i])) for i, r in enumerate(self.blinded.record_of) if r >= 0]
        records = np.asarray([p[0] for p in pairs], dtype=np.int64)
        return records, np.asarray([p[1] for p in pairs], dtype=np.int64)

    def cells(self, group: Clique, records: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        columns = list(self.spec.columns[self.party])
        codes = self.codes[records][:, [columns.index(c) for c in group]].astype(np.int64)
        shape = self.domain.project(group).shape
        return np.asarray(np.ravel_multi_index(tuple(codes.T), shape), dtype=np.int64)

    def aggregate(self, request: VerticalRoundRequest, sid: bytes) -> AggregateReply:
        """Sums of the other's ciphertexts per cell of this party's columns, noised, signed."""
        layout = RoundLayout(self.spec, self.domain, tuple(request.cliques))
        outputs = layout.outputs(self.party)
        records, where = self.joined()
        sums = self._group_sums(outputs, records, where)
        noise = self._noise_plaintexts(outputs, request.sigma_party2)
        result = []
        for output, plaintext in zip(outputs, noise, strict=True):
            total = (
                self._packed(output, sums)
                if isinstance(output, Packed)
                else sums.get(_key(output), self.peer_scheme.one)
            )
            result.append(self.peer_scheme.add(total, self.peer_scheme.encrypt(plaintext)))
        data = self.peer_scheme.encode(result)
        return AggregateReply(
            sid, self.party, data, sign(self.identity_key, "aggregate", sid, self.party, data)
        )

    def _group_sums(
        self, outputs: list[Any], records: npt.NDArray[np.int64], where: npt.NDArray[np.int64]
    ) -> dict[tuple[Clique, int, int], Any]:
        needed: dict[Clique, set[int]] = {}
        for output in outputs:
            if isinstance(output, Full):
                needed.setdefault(output.group, set()).add(output.t)
            else:
                for group, _, _ in output.items:
                    needed.setdefault(group, set()).add(0)
        scheme = self.peer_scheme
        sums: dict[tuple[Clique, int, int], Any] = {}
        for group, ts in needed.items():
            cells = self.cells(group, records)
            for t in sorted(ts):
                column = self.peer_ciphertexts[t]
                for cell, position in zip(cells.tolist(), where.tolist(), strict=True):
                    key = (group, cell, t)
                    sums[key] = scheme.add(sums.get(key, scheme.one), column[position])
        return sums

    def _packed(self, output: Packed, sums: dict[tuple[Clique, int, int], Any]) -> Any:
        scheme = self.peer_scheme
        total = scheme.one
        for group, cell, _ in reversed(output.items):  # Horner: slot 0 ends in the low bits
            total = scheme.add(scheme.shift(total, 32), sums.get((group, cell, 0), scheme.one))
        return total

    def _slot_kinds(self, output: Any) -> list[str]:
        """Per slot: "asked" (the round's variance), "extra" (SIGMA_EXTRA2) or "" (no data in the slot)."""
        if isinstance(output, Packed):
            return ["asked"] * len(output.items)
        n_slots = EntryLayout.for_party(self.spec, self.domain, self.other).n_slots
        return [
            "asked" if ref is not None else ("extra" if output.t * SLOTS + s < n_slots else "")
            for s, ref in enumerate(output.slots)
        ]

    def _noise_plaintexts(self, outputs: list[Any], sigma2: Fraction) -> list[int]:
        """This party's noise for every slot of every output (two draws in all), offset and packed."""
        kinds = [self._slot_kinds(output) for output in outputs]
        flat = [k for row in kinds for k in row]
        draws = {
            "asked": iter(self.noise(flat.count("asked"), sigma2).tolist()),
            "extra": iter(self.noise(flat.count("extra"), SIGMA_EXTRA2).tolist() if "extra" in flat else []),
            "": iter([]),
        }
        plaintexts = []
        for row in kinds:
            values = [next(draws[k]) if k else 0 for k in row]
            if any(abs(v) >= NOISE_BOUND for v in values):
                raise ProtocolAbort(f"party {self.party}: a noise draw left its slot's range")
            plaintexts.append(pack([OFFSET + v for v in values]))
        return plaintexts

    def release(
        self, request: VerticalRoundRequest, sid: bytes, other: AggregateReply
    ) -> npt.NDArray[np.int64]:
        """Decrypt the other's aggregate, add this party's noise: the tables this party releases."""
        if other.sender != self.other or other.sid != sid:
            raise ProtocolAbort(f"party {self.party}: the aggregate is not the peer's for this round")
        verify(self.peer_key, other.signature, "aggregate", sid, other.sender, other.data)
        layout = RoundLayout(self.spec, self.domain, tuple(request.cliques))
        outputs = layout.outputs(self.other)
        cts = self.scheme.decode(other.data, len(outputs), f"aggregate of {other.sender}")
        tables = {i: np.zeros(layout.cells(i), dtype=np.int64) for i in layout.released_by(self.party)}
        for output, ct in zip(outputs, cts, strict=True):
            slots = unpack(self._decrypt(ct))
            refs = [i[2] for i in output.items] if isinstance(output, Packed) else list(output.slots)
            for ref, value in zip(refs, slots, strict=False):
                if ref is not None:
                    tables[ref[0]][ref[1]] = _count(value, self.party)
        vector = np.concatenate([tables[i] for i in sorted(tables)]) if tables else np.zeros(0, np.int64)
        return vector + self.noise(vector.size, request.sigma_party2)

    def _decrypt(self, ciphertext: Any) -> int:
        value = int(self.scheme.decrypt(ciphertext))
        if value >> (32 * SLOTS):
            raise ProtocolAbort(f"party {self.party}: an aggregate decrypts outside the slot layout")
        return value


def _key(output: Full) -> tuple[Clique, int, int]:
    return (output.group, output.cell, output.t)


def _count(slot: int, party: str) -> int:
    value = slot - OFFSET
    if not -NOISE_BOUND < value < MAX_ROWS_LIMIT + NOISE_BOUND:
        raise ProtocolAbort(f"party {party}: an aggregated count is outside its possible range")
    return value


def _public_bytes(scheme: Any) -> bytes:
    return scheme.public_key().to_bytes() if isinstance(scheme, PaillierPublic) else b"plain"


def _peer_scheme(own: Any, data: bytes) -> Any:
    if isinstance(own, PlainScheme):
        return PlainScheme()
    return PaillierPublic(PublicKey.from_bytes(data))
