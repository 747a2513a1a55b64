"""Junction trees over a domain: which cliques the graphical model keeps tables for.

The measured cliques define an interaction graph over the attributes. If that graph is chordal (a tree of
pairs, as MST selects, is), its maximal cliques already form a junction tree. Otherwise (e.g. a triangle
of pairs, or a cycle) we triangulate it by greedy elimination: an attribute needing no fill-in edges first
(so a chordal graph gets a perfect elimination order and no extra edges), otherwise the one whose
elimination clique has the smallest table; we keep the maximal elimination cliques. A clique table above
`max_cells` is refused rather than silently allocated. The cliques are joined by a maximum-weight spanning
tree on separator size (Kruskal), which has the running-intersection property for the cliques of a
triangulated graph; disconnected components are linked with empty separators so there is always one tree.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from math import prod
from typing import TypeVar

from cleanroom.domain import Clique, Domain
from cleanroom.errors import InvalidInput

Node = TypeVar("Node", bound=Hashable)

DEFAULT_MAX_CELLS = 2_000_000


@dataclass(frozen=True)
class JunctionTree:
    """Cliques (canonical order) with `parent[i]` (-1 for the root), `order` root-first, `separator[i]`."""

    cliques: tuple[Clique, ...]
    parent: tuple[int, ...]
    order: tuple[int, ...]
    separator: tuple[Clique, ...]

    def __post_init__(self) -> None:
        n = len(self.cliques)
        if not (len(self.parent) == len(self.order) == len(self.separator) == n) or n == 0:
            raise InvalidInput(f"JunctionTree: {n} cliques but mismatched parent/order/separator lengths")
        if sorted(self.order) != list(range(n)) or self.parent[self.order[0]] != -1:
            raise InvalidInput("JunctionTree: order must be a permutation starting at the root")

    def children(self, node: int) -> list[int]:
        return [i for i, p in enumerate(self.parent) if p == node]

    def containing(self, attrs: Iterable[str]) -> int:
        """Index of the smallest clique containing all of `attrs` (KeyError if none)."""
        wanted = set(attrs)
        best = [i for i, c in enumerate(self.cliques) if wanted <= set(c)]
        if not best:
            raise KeyError(f"no clique of the junction tree contains {sorted(wanted)}")
        return min(best, key=lambda i: len(self.cliques[i]))


def _elimination_cliques(domain: Domain, adjacency: dict[str, set[str]], max_cells: int) -> list[Clique]:
    adj = {a: set(n) for a, n in adjacency.items()}
    size = domain.to_dict()
    cliques: list[frozenset[str]] = []
    while adj:

        def cost(a: str) -> tuple[bool, int, int]:
            nbrs = adj[a]
            fill = sum(1 for u in nbrs for v in nbrs if u < v and v not in adj[u])
            return fill > 0, prod(size[x] for x in nbrs) * size[a], fill

        attr = min(sorted(adj), key=cost)
        clique = frozenset(adj[attr] | {attr})
        cells = cost(attr)[1]
        if cells > max_cells:
            raise InvalidInput(
                f"junction tree clique {sorted(clique)} has {cells} cells, over the cap of {max_cells}"
            )
        cliques.append(clique)
        for u in adj[attr]:
            adj[u] |= adj[attr] - {u}
            adj[u].discard(attr)
        del adj[attr]
    maximal = [c for c in cliques if not any(c < other for other in cliques)]
    unique = list(dict.fromkeys(maximal))
    return [domain.canonical(tuple(c)) for c in unique]


def spanning_forest(nodes: Iterable[Node], edges: Iterable[tuple[Node, Node]]) -> list[tuple[Node, Node]]:
    """Kruskal: the `edges`, taken in the given order (best first), that join two trees of the forest."""
    root = {node: node for node in nodes}

    def find(x: Node) -> Node:
        while root[x] != x:
            root[x] = root[root[x]]
            x = root[x]
        return x

    kept = []
    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            root[ra] = rb
            kept.append((a, b))
    return kept


def _spanning_tree(cliques: Sequence[Clique]) -> list[tuple[int, int]]:
    n = len(cliques)
    candidates = sorted(
        ((len(set(cliques[i]) & set(cliques[j])), i, j) for i in range(n) for j in range(i + 1, n)),
        key=lambda t: (-t[0], t[1], t[2]),
    )
    return spanning_forest(range(n), ((i, j) for _, i, j in candidates))


def build_junction_tree(
    domain: Domain, cliques: Iterable[Sequence[str]], max_cells: int = DEFAULT_MAX_CELLS
) -> JunctionTree:
    """A junction tree covering every attribute of `domain` and every clique in `cliques`."""
    adjacency: dict[str, set[str]] = {a: set() for a in domain.attrs}
    for clique in cliques:
        for a in clique:
            if a not in domain:
                raise InvalidInput(f"clique {tuple(clique)}: attribute {a!r} is not in the domain")
            adjacency[a] |= set(clique) - {a}
    jt_cliques = _elimination_cliques(domain, adjacency, max_cells)
    edges = _spanning_tree(jt_cliques)
    neighbours: dict[int, list[int]] = {i: [] for i in range(len(jt_cliques))}
    for i, j in edges:
        neighbours[i].append(j)
        neighbours[j].append(i)
    parent = [-1] * len(jt_cliques)
    order = [0]
    for node in order:  # breadth-first; the list grows while we walk it
        for nb in neighbours[node]:
            if nb != 0 and parent[nb] == -1:
                parent[nb] = node
                order.append(nb)
    separator = [
        domain.canonical(tuple(set(jt_cliques[i]) & set(jt_cliques[p]))) if p >= 0 else ()
        for i, p in enumerate(parent)
    ]
    return JunctionTree(tuple(jt_cliques), tuple(parent), tuple(order), tuple(separator))
