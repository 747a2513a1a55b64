"""How often random failures beyond a plan's bounds disconnect the honest survivors of a sparse masking graph.

Each party independently drops out or colludes with probability p; the script counts the trials in which the
remaining parties of the Harary graph H(k, n) are not connected (the coordinator could then learn a partial
sum) and prints the minimum-cut estimate n(n - k - 1)/2 p^k beside it (docs/secagg.md, "Sparse masking
graph"). Within the plan's declared dropouts and colluders the probability is 0 by construction.

    python scripts/secagg_graph_failure.py [--parties 50] [--degrees 6 8] [--p 0.1 0.2] [--trials 20000]
"""

from __future__ import annotations

import argparse

import numpy as np

from cleanroom.secagg.graph import is_connected, masking_graph


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=int, default=50)
    parser.add_argument("--degrees", type=int, nargs="+", default=[6, 8])
    parser.add_argument("--p", type=float, nargs="+", default=[0.1, 0.2])
    parser.add_argument("--trials", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    n = args.parties
    parties = tuple(f"q{i}" for i in range(n))
    print(f"{'n':>4} {'k':>3} {'p':>5} {'disconnected':>13} {'min-cut estimate':>17}")
    for k in args.degrees:
        graph = masking_graph(bytes(32), parties, k)
        for p in args.p:
            bad = sum(
                not is_connected(graph, {parties[i] for i in np.flatnonzero(rng.random(n) < p)})
                for _ in range(args.trials)
            )
            estimate = n * (n - k - 1) / 2 * p**k
            print(f"{n:>4} {k:>3} {p:>5} {bad / args.trials:>13.2e} {estimate:>17.2e}")


if __name__ == "__main__":
    main()
