"""docs/operations.md, followed literally: every ```bash block, in order, as a real shell process.

The blocks run one by one with `bash -euo pipefail` in a fresh folder holding only the documented inputs
(`schema.json`, `data/airline.csv`, `data/hotel.csv`). The only substitutions are the documented
placeholders, filled from what the earlier commands printed (`<schema hash>` from `cleanroom schema hash`,
`<NAME cert_sha256>`/`<NAME identity_key>` from `cleanroom ca issue NAME`, `<plan hash>` from `cleanroom plan
approve`), and the two documented ports, replaced by free ones. So the deployment docs cannot go stale: a
renamed flag, a config key the node no longer accepts or a missing step fails this test.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cleanroom.audit import verify
from cleanroom.sample_data import demo_dataset
from cleanroom_cli import local

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "operations.md"
PORTS = ("50051", "50052")


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def learn_placeholders(output: str, values: dict[str, str]) -> None:
    """Record the values the documented commands print, under the placeholder names the doc uses."""
    issued = re.finditer(
        r"certificate \S*?([\w-]+)\.pem\n.*?cert_sha256 = \"([0-9a-f]{64})\"\nidentity_key = \"(\S+)\"",
        output,
        flags=re.DOTALL,
    )
    for match in issued:
        values[f"<{match[1]} cert_sha256>"] = match[2]
        values[f"<{match[1]} identity_key>"] = match[3]
    for line in output.splitlines():
        if re.fullmatch(r"[0-9a-f]{64}", line.strip()):
            values["<schema hash>"] = line.strip()
        plan = re.match(r"plan hash ([0-9a-f]{64}): list it in", line)
        if plan:
            values["<plan hash>"] = plan[1]


def fill(block: str, values: dict[str, str], ports: dict[str, str]) -> str:
    for placeholder, value in values.items():
        block = block.replace(placeholder, value)
    for documented, free in ports.items():
        block = block.replace(documented, free)
    left = sorted(set(re.findall(r"<[a-z][\w ]*>", block)))
    assert not left, f"placeholders nothing printed a value for: {left}"
    return block


def run_block(block: str, folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """One block in its own bash and process group; any node it left running is stopped afterwards."""
    proc = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """The documented inputs: the agreed schema and each party's own data file."""
    schema, frame, target, task = demo_dataset(6000, seed=21)
    assert (target, task) == ("premium_upgrade", "classification")  # what the documented plan names
    (tmp_path / "schema.json").write_text(json.dumps(schema, indent=2))
    (tmp_path / "data").mkdir()
    frame.iloc[0::2].to_csv(tmp_path / "data" / "airline.csv", index=False)
    frame.iloc[1::2].to_csv(tmp_path / "data" / "hotel.csv", index=False)
    return tmp_path


def test_the_deployment_walkthrough_works_as_written(inputs: Path) -> None:
    blocks = bash_blocks(DOC.read_text())
    commands = "\n".join(blocks)
    for step in ("ca init", "ca issue", "schema hash", "plan show", "plan approve", "party serve",
                 "health", "coordinator run", "party budget", "audit verify"):  # fmt: skip
        assert f"cleanroom {step}" in commands, f"the walkthrough lost `cleanroom {step}`"
    env = dict(local._env(), PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    ports = {documented: str(local.free_port()) for documented in PORTS}
    values: dict[str, str] = {}
    for number, block in enumerate(blocks, 1):
        run = run_block(fill(block, values, ports), inputs, env)
        assert run.returncode == 0, (
            f"block {number} failed ({run.returncode}):\n{block}\n{run.stdout}\n{run.stderr}"
        )
        assert "Traceback" not in run.stderr, run.stderr
        learn_placeholders(run.stdout, values)
    # what the document says the walkthrough leaves behind
    airline, hotel = inputs / "results" / "airline", inputs / "results" / "hotel"
    report = json.loads((airline / "report.json").read_text())
    delivered = {"report.json", "report.html"}
    if report["release"]["released"]:  # the gate's decision, documented: blocked -> only the report
        delivered |= {"synthetic.csv", "model.onnx"}
        assert (hotel / "model.onnx").is_file()
    assert delivered <= {p.name for p in airline.iterdir()}
    assert (hotel / "report.json").is_file() and not (hotel / "synthetic.csv").exists()
    assert verify(inputs / "state" / "airline" / "audit.jsonl").ok
    assert oct((inputs / "state" / "airline").stat().st_mode & 0o777) == "0o700"
