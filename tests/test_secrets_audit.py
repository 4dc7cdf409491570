"""The suite-wide audit: no secret the tests configured appears in anything the scripts printed.

``tests.support.concourse.RECORDED_OUTPUTS`` holds every stdout and stderr (metadata included, since
it is on stdout) of every script and CLI run of this session, failures included. This test runs last.
"""

from __future__ import annotations

import pytest

from tests.support.concourse import RECORDED_OUTPUTS
from tests.support.gpgkeys import GpgKeys
from tests.support.seaweed import SeaweedServer

# Literal passphrases the integration tests configure.
TEST_PASSPHRASES = ("bundle passphrase 42", "bundle-passphrase-Zq81")


@pytest.mark.secrets_audit
def test_no_secret_in_any_output_of_the_whole_suite(gpg_keys: GpgKeys, seaweed: SeaweedServer) -> None:
    if len(RECORDED_OUTPUTS) < 20:
        pytest.skip(f"only {len(RECORDED_OUTPUTS)} outputs recorded: run the whole suite for this audit")
    secrets: list[str] = [seaweed.rw_secret_key, seaweed.ro_secret_key, seaweed.wr_secret_key, *TEST_PASSPHRASES]
    for key in gpg_keys.all().values():
        if key.passphrase:
            secrets.append(key.passphrase)
        secrets.extend(ln for ln in key.secret_armored.splitlines() if len(ln) >= 16 and not ln.startswith("-----"))
    leaks = []
    for text in RECORDED_OUTPUTS:
        for s in secrets:
            if s in text:
                at = text.index(s)
                leaks.append(text[max(0, at - 120) : at].replace("\n", " | ") + "<SECRET>")
    assert not leaks, f"{len(leaks)} secret value(s) in recorded outputs; before the first: {leaks[0]!r}"
