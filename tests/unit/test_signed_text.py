"""Clear-signed text: what the put signs (openpgp.signed.clearsign) and what a get takes as signed (canonical_text)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from offline_bundle.openpgp.signed import _carries_file, canonical_text, clearsign, in_place, verify_clearsigned
from tests.support.gpgkeys import GpgKeys


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


def test_a_text_signed_from_its_pieces_verifies_as_those_pieces_joined(gpg_keys: GpgKeys) -> None:
    pieces = [b'{"files":[\n'] + [b'{"path":"d/f-%06d"},\n' % i for i in range(20_000)] + [b"{}]}"]
    signed, fingerprint = clearsign(iter(pieces), gpg_keys.signer.secret_armored, None)
    assert fingerprint == gpg_keys.signer.fingerprint
    verified = verify_clearsigned(signed, [gpg_keys.signer.public_armored])
    assert verified.data == b"".join(pieces) and verified.fingerprint == fingerprint


def test_the_signed_message_is_compared_with_the_text_file(tmp_path: Path) -> None:
    text = tmp_path / "text"
    text.write_bytes(b'{"a":1,\n"b":2}\n')
    message = b'-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{"a":1,\n"b":2}\n-----BEGIN PGP SIGNATURE-----\n'
    assert _carries_file(message, str(text))
    assert not _carries_file(message.replace(b'"b":2', b'"b":3'), str(text))
    assert not _carries_file(message.replace(b'"b":2}', b'"b":2'), str(text))
    escaped = message.replace(b'\n"b"', b'\n- -"b"')
    text.write_bytes(b'{"a":1,\n-"b":2}')
    assert _carries_file(escaped, str(text))


def test_the_verified_text_is_taken_in_place_only_where_the_message_holds_it_as_it_stands() -> None:
    message = b'-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{"a":1,\n"b":2}\n-----BEGIN PGP SIGNATURE-----\n'
    text = b'{"a":1,\n"b":2}'
    found = in_place(message, text)
    assert isinstance(found, memoryview) and found == text
    other = b'{"a":1,\n"b":3}'
    assert in_place(message, other) is other  # gpg's text differs from what the message shows: gpg's counts
    escaped = message.replace(b'\n"b"', b'\n- -"b"')
    unescaped = b'{"a":1,\n-"b":2}'
    assert in_place(escaped, unescaped) is unescaped
