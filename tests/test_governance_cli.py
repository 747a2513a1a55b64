"""`cleanroom audit verify|show` on edited and truncated logs, `party prune` exit paths (in-process CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cleanroom.audit import AuditLog, head_path
from cleanroom_cli.main import main


def _log(tmp_path: Path, entries: int = 5) -> Path:
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(entries):
        log.append(
            "measure", "answered", job_id="j1", round=i, plan_hash="ab" * 32, rho_charged=0.01,
            rho_remaining=1.0 - 0.01 * (i + 1), requester="coordinator",
        )  # fmt: skip
    log.append("start_job", "refused", job_id="j2", plan_hash="ab" * 32, detail="plan cd is not approved")
    return log.path


def _verify(log: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    status = main(["audit", "verify", str(log)])
    return status, capsys.readouterr().out


def test_verify_accepts_an_intact_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = _verify(_log(tmp_path), capsys)
    assert status == 0 and "OK, 6 entries" in out and "matches its head file" in out


def test_verify_names_the_first_edited_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = _log(tmp_path)
    lines = log.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace('"rho_charged":0.01', '"rho_charged":0.0')  # hide a charge on line 3
    assert lines[2] != log.read_text().splitlines(keepends=True)[2]
    lines[4] = lines[4].replace("coordinator", "somebody")
    log.write_text("".join(lines))
    status, out = _verify(log, capsys)
    assert status != 0 and "BROKEN at line 3" in out and "edited" in out


def test_verify_detects_deleted_last_lines_with_the_head_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = _log(tmp_path)
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:4]))  # drop the last two entries, including the refusal
    status, out = _verify(log, capsys)
    assert status != 0 and "BROKEN at line 5" in out and "tail truncated" in out
    head_path(log).unlink()  # without the head the shorter chain is consistent, and verify says so
    status, out = _verify(log, capsys)
    assert status == 0 and "tail truncation undetectable" in out


def test_verify_detects_a_line_cut_in_the_middle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = _log(tmp_path)
    data = log.read_bytes()
    log.write_bytes(data[: len(data) - 40])  # truncated inside the last entry
    status, out = _verify(log, capsys)
    assert status != 0 and "BROKEN at line 6" in out and "incomplete last line" in out


def test_verify_detects_a_removed_middle_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = _log(tmp_path)
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:1] + lines[2:]))
    status, out = _verify(log, capsys)
    assert status != 0 and "BROKEN at line 2" in out and "seq 3 where 2 was expected" in out


def test_show_lists_rho_per_job_and_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = _log(tmp_path)
    capsys.readouterr()
    assert main(["audit", "show", str(log)]) == 0
    out = capsys.readouterr().out
    assert "Job j1" in out and "5 answered" in out and "rho charged 0.05" in out
    assert "Refusals: 1" in out and "plan cd is not approved" in out


def test_party_prune_with_a_missing_config_is_a_configuration_error(tmp_path: Path) -> None:
    assert main(["party", "prune", "--config", str(tmp_path / "absent.toml")]) == 2
