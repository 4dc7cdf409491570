"""Approval statements a careless or two-faced approver tool could sign.

The approver's key signs the statement; everything after the signature is the parser's word. A
statement must mean one thing to every reader, and a malformed one is ignored with a reason, never
a crash of the whole ``check`` or get.
"""

from __future__ import annotations

import json

import pytest

from offline_bundle.bundle.approvals import APPROVAL_FORMAT, APPROVAL_KIND, ApprovalRejected, parse_statement

FPR = "A" * 40
SHA = "b" * 64


def statement(**extra: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "kind": APPROVAL_KIND,
        "format": APPROVAL_FORMAT,
        "name": "demo",
        "version": "1",
        "manifest_sha256": SHA,
        "approved_at": "2026-11-30T00:00:00Z",
        "approver": FPR,
    }
    doc.update(extra)
    return doc


def test_a_well_formed_statement_parses() -> None:
    """The control: the statements below differ from this one only in what each test changes."""
    parsed = parse_statement(json.dumps(statement()).encode())
    assert (parsed.manifest_sha256, parsed.approver) == (SHA, FPR)


@pytest.mark.parametrize("key", ["manifest_sha256", "approver", "version", "kind"])
def test_a_key_given_twice_is_rejected(key: str) -> None:
    """json keeps the last value, another reader the first: one signed statement, two meanings."""
    text = json.dumps(statement())
    twice = text[:-1] + f', "{key}": "{"c" * 64 if key == "manifest_sha256" else "other"}"}}'
    with pytest.raises(ApprovalRejected, match="twice"):
        parse_statement(twice.encode())


def test_a_number_of_ten_thousand_digits_is_rejected_not_a_crash() -> None:
    text = json.dumps(statement())[:-1] + ', "n": ' + "9" * 10_000 + "}"
    with pytest.raises(ApprovalRejected):
        parse_statement(text.encode())


@pytest.mark.parametrize("value", [True, 1.0, "1"])
def test_a_format_that_only_equals_the_known_one_is_rejected(value: object) -> None:
    if value == APPROVAL_FORMAT and type(value) is type(APPROVAL_FORMAT):
        pytest.skip("this spelling is the format itself")
    with pytest.raises(ApprovalRejected, match="format"):
        parse_statement(json.dumps(statement(format=value)).encode())
