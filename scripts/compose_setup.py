"""Prepare deploy/ for `docker compose up` (sample data, CA, certificates, plan, party configs).

Usage: python scripts/compose_setup.py [--out deploy] [--rows 30000] [--epsilon 1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cleanroom_cli.compose import prepare_compose  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "deploy")
    parser.add_argument("--rows", type=int, default=30000, help="rows per party")
    parser.add_argument("--epsilon", type=float, default=1.0)
    args = parser.parse_args()
    plan = prepare_compose(args.out, args.rows, args.epsilon)
    print(f"wrote {args.out} (plan {plan}); now: docker compose up --build")
    return 0


if __name__ == "__main__":
    sys.exit(main())
