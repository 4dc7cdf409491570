"""The signed text of a clear-signed commit object, as OpenPGP defines it (openpgp.signed.canonical_text)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from offline_bundle.openpgp.signed import canonical_text


def by_lines(signed: bytes) -> bytes:
    """The rule itself, line by line: trailing blanks and CRs removed, the last line break dropped."""
    lines = [ln.rstrip(b" \t\r") for ln in signed.split(b"\n")]
    if lines and lines[-1] == b"":
        lines.pop()
    return b"\n".join(lines)


@given(st.lists(st.sampled_from([b"a", b"{}", b" ", b"\t", b"\r", b"\n", b"- x", b"\r\n"]), max_size=12))
def test_the_text_is_the_same_with_or_without_the_shortcut(pieces: list[bytes]) -> None:
    signed = b"".join(pieces)
    assert canonical_text(signed) == by_lines(signed)


def test_the_writers_text_is_only_cut_before_its_last_line_break() -> None:
    text = b'{"a":1,\n"b":[\n{"c":2}\n]}'
    assert canonical_text(text + b"\n") == text
    assert canonical_text(text + b" \r\n") == text
    assert canonical_text(b"") == b""
