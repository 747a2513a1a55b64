"""Prepare deployment folders for the container image on the built-in sample data.

Usage: python scripts/compose_setup.py [--out deploy] [--rows 30000] [--epsilon 1]
         the all-in-one local pilot: docker-compose.yml mounts deploy/
       python scripts/compose_setup.py --partners --out DIR [--host 127.0.0.1] [--port 50061] ...
         one folder per party (ports --port, --port+1, ...) and one for the coordinator, each with the env
         file for compose/party.yml or compose/coordinator.yml (docs/operations.md, "Containers")
Run as root, it gives the key files to the image's user (uid 10001); otherwise it prints the command.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cleanroom_cli.compose import (  # noqa: E402
    CONTAINER_UID,
    PARTIES,
    SampleJob,
    chown_secrets,
    prepare_compose,
    prepare_partners,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "deploy")
    parser.add_argument("--rows", type=int, default=30000, help="rows per party")
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--partners", action="store_true", help="one folder per node (compose/*.yml)")
    parser.add_argument("--host", default="127.0.0.1", help="--partners: the address parties listen on")
    parser.add_argument("--port", type=int, default=50061, help="--partners: the first party's port")
    parser.add_argument("--image", default="cleanroom:latest", help="--partners: the image to run")
    args = parser.parse_args()
    if args.partners:
        ports = {pid: args.port + i for i, pid in enumerate(PARTIES)}
        job = SampleJob(args.rows, args.epsilon)
        plan = prepare_partners(args.out, ports, args.host, job, args.image)
        key_folders = [args.out / pid / "secrets" for pid in (*PARTIES, "coordinator")]
        next_step = f"see docs/operations.md, 'Deploying one partner's node' (env files in {args.out}/*/)"
    else:
        plan = prepare_compose(args.out, args.rows, args.epsilon)
        key_folders = [args.out / pid / "keys" for pid in (*PARTIES, "coordinator")]
        next_step = "docker-compose up"
    if os.geteuid() == 0:
        for folder in key_folders:
            chown_secrets(folder)
    else:
        folders = " ".join(f"{folder}/*" for folder in key_folders)
        print(f"give the image's user the keys: sudo chown {CONTAINER_UID}:{CONTAINER_UID} {folders}")
    print(f"wrote {args.out} (plan {plan}); now: {next_step}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
