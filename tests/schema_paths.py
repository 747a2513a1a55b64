"""Where the read-only shared data lives: beside the checkout (or beside a worktree's parent folder)."""

from __future__ import annotations

from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
_CANDIDATES = (_ROOT / ".." / "shared", _ROOT / ".." / ".." / "shared")
SHARED = next((p.resolve() for p in _CANDIDATES if p.is_dir()), _CANDIDATES[0])
ADULT_DIR = SHARED / "data" / "adult"
