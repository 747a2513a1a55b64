"""Forked party processes (cleanroom_cli.party_launcher): exit status and log. Signals and the /proc figures
are used by every local run (`local.stop`), e.g. tests/integration/test_evaluation_e2e.py."""

from __future__ import annotations

from pathlib import Path

from cleanroom_cli.party_launcher import ForkedParty


def test_a_forked_party_reports_its_exit_status_and_writes_its_log(tmp_path: Path) -> None:
    party = ForkedParty(["party", "serve", "--config", "missing.toml"], tmp_path / "p.log", tmp_path)
    assert party.wait(60) == 2  # `cleanroom` exit status 2: a configuration problem, one line
    assert "missing.toml" in (tmp_path / "p.log").read_text()
    assert party.poll() == 2 and party.usage() is None  # gone: no /proc figures
    party.kill()  # a finished process: nothing to signal, no error
