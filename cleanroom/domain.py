"""Finite attribute domains: which columns exist and how many levels each has.

A `Domain` is the public, agreed shape of the encoded table: every measured column is an
integer-coded attribute with a fixed number of levels. Marginal tables, measurements and the
synthesizer's graphical model are all indexed by sub-domains (cliques) of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from math import prod

Clique = tuple[str, ...]


@dataclass(frozen=True)
class Domain:
    """Ordered attribute names with their number of levels."""

    attrs: tuple[str, ...]
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.attrs) != len(self.shape):
            raise ValueError(f"attrs ({len(self.attrs)}) and shape ({len(self.shape)}) differ in length")
        if len(set(self.attrs)) != len(self.attrs):
            raise ValueError(f"attrs {self.attrs} contain duplicates")
        for name, size in zip(self.attrs, self.shape, strict=True):
            if int(size) < 1:
                raise ValueError(f"size of {name!r} ({size}) must be >= 1")

    @classmethod
    def from_sizes(cls, sizes: dict[str, int]) -> Domain:
        return cls(tuple(sizes), tuple(int(v) for v in sizes.values()))

    def __contains__(self, attr: object) -> bool:
        return attr in self.attrs

    def __iter__(self) -> Iterator[str]:
        return iter(self.attrs)

    def __len__(self) -> int:
        return len(self.attrs)

    def size(self, attr: str | None = None) -> int:
        """Number of cells of the whole domain, or the number of levels of one attribute."""
        if attr is None:
            return prod(self.shape)
        return self.shape[self.index(attr)]

    def index(self, attr: str) -> int:
        try:
            return self.attrs.index(attr)
        except ValueError:
            raise KeyError(f"attribute {attr!r} is not in the domain {self.attrs}") from None

    def project(self, clique: Iterable[str]) -> Domain:
        """The sub-domain of `clique`, in the clique's order."""
        names = tuple(clique)
        return Domain(names, tuple(self.size(a) for a in names))

    def canonical(self, clique: Sequence[str]) -> Clique:
        """The clique's attributes in domain order (the order tables are laid out in)."""
        return tuple(sorted(clique, key=self.index))

    def to_dict(self) -> dict[str, int]:
        return dict(zip(self.attrs, self.shape, strict=True))
