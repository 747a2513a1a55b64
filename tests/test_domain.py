"""Domain value class: validation and projections."""

from __future__ import annotations

import pytest

from cleanroom.domain import Domain


def test_project_and_sizes() -> None:
    dom = Domain(("a", "b", "c"), (2, 3, 4))
    assert dom.size() == 24
    assert dom.size("b") == 3
    assert dom.project(("c", "a")).shape == (4, 2)
    assert dom.canonical(("c", "a")) == ("a", "c")


@pytest.mark.parametrize(
    ("attrs", "shape", "message"),
    [
        (("a",), (2, 3), "differ in length"),
        (("a", "a"), (2, 2), "duplicates"),
        (("a",), (0,), "must be >= 1"),
    ],
)
def test_invalid_domains_are_refused(attrs: tuple[str, ...], shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Domain(attrs, shape)


def test_unknown_attribute_is_named() -> None:
    with pytest.raises(KeyError, match="'zzz'"):
        Domain(("a",), (2,)).size("zzz")
