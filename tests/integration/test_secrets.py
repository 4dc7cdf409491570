"""No secret value reaches stdout, stderr or metadata, whether the step succeeds or fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.concourse import run_asset
from tests.support.sides import Sides, small_tree

pytestmark = pytest.mark.integration

ENCRYPTION_PASSPHRASE = "bundle-passphrase-Zq81"


def secret_fragments(values: list[str]) -> list[str]:
    """Each secret, and each line of an armoured secret key long enough to be key material."""
    out = []
    for v in values:
        out.append(v)
        out.extend(ln for ln in v.splitlines() if len(ln) >= 16 and not ln.startswith("-----"))
    return out


def test_no_secret_in_any_output(sides: Sides, tmp_path: Path) -> None:
    k = sides.keys
    put_source = {
        **sides.put_source,
        "recipient_public_keys": [k.recipient_pw.public_armored],
        "encryption_passphrase": ENCRYPTION_PASSPHRASE,
        "signing_private_key": k.signer_pw.secret_armored,
        "signing_private_key_passphrase": k.signer_pw.passphrase,
    }
    get_source = {
        **sides.get_source,
        "trusted_public_keys": [k.signer_pw.public_armored],
        "decryption_private_key": k.recipient_pw.secret_armored,
        "decryption_private_key_passphrase": k.recipient_pw.passphrase,
    }
    secrets = secret_fragments(
        [
            put_source["secret_access_key"],
            ENCRYPTION_PASSPHRASE,
            k.signer_pw.secret_armored,
            k.signer_pw.passphrase or "",
            k.recipient_pw.secret_armored,
            k.recipient_pw.passphrase or "",
        ]
    )
    build = small_tree(tmp_path / "b", a="payload")
    params = {"parts": [{"name": "a", "path": "a"}], "version": "1.0.0"}

    # What succeeds...
    sides.put(build, params, source=put_source)
    sides.check(source=get_source)
    sides.get("1.0.0", tmp_path / "d1", source=get_source)
    sides.get("1.0.0", tmp_path / "d2", source=get_source, params={"skip_download": True})
    # ...and what fails, where a careless message would quote a value.
    failing = [
        sides.out(
            build, {**params, "version": "2"}, source={**put_source, "signing_private_key_passphrase": "wrong-1"}
        ),
        sides.in_("1.0.0", tmp_path / "d3", source={**get_source, "decryption_private_key_passphrase": "wrong-2"}),
        sides.in_(
            "1.0.0",
            tmp_path / "d4",
            source={
                **{k2: v for k2, v in get_source.items() if not k2.startswith("decryption")},
                "encryption_passphrase": "wrong-3",
            },
        ),
        sides.in_("1.0.0", tmp_path / "d5", source={**get_source, "secret_access_key": "wrong-4-secret"}),
        sides.in_("1.0.0", tmp_path / "d6", source={**get_source, "unknown": put_source["secret_access_key"]}),
        run_asset("check", {"source": {**get_source, "signing_private_key": k.recipient_pw.public_armored}}),
    ]
    sides.runs.extend(failing[-1:])
    assert all(p.returncode != 0 for p in failing), [p.stderr for p in failing]
    expected = [
        "signing_private_key_passphrase is wrong",
        "decryption_private_key_passphrase is wrong",
        "does not decrypt with source.encryption_passphrase",
        "SignatureDoesNotMatch",
        "unknown key unknown",
        "signing_private_key holds a public key",
    ]
    for proc, words in zip(failing, expected, strict=True):
        assert words in proc.stderr.strip().splitlines()[-1], proc.stderr
    for p in failing:
        assert "Traceback" not in p.stderr and p.stdout == ""

    assert len(sides.runs) >= 10
    for proc in sides.runs:
        text = proc.stdout + proc.stderr
        for s in secrets:
            assert s not in text, f"a secret value appears in the output of {proc.args[0]}"
        for wrong in ("wrong-1", "wrong-2", "wrong-3", "wrong-4-secret"):
            assert wrong not in text


def test_gpg_homes_are_removed_and_no_agent_survives(sides: Sides, tmp_path: Path) -> None:
    """Each gpg operation has its own home under TMPDIR; after a put and a get none is left, nor an agent."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    k = sides.keys
    put_source = {
        **sides.put_source,
        "signing_private_key": k.signer_pw.secret_armored,
        "signing_private_key_passphrase": k.signer_pw.passphrase,
    }
    get_source = {**sides.get_source, "trusted_public_keys": [k.signer_pw.public_armored]}
    build = small_tree(tmp_path / "b", a="agent check")
    sides.put(
        build, {"parts": [{"name": "a", "path": "a"}], "version": "1"}, source=put_source, env={"TMPDIR": str(tmp)}
    )
    sides.get("1", tmp_path / "dest", source=get_source, env={"TMPDIR": str(tmp)})
    assert os.listdir(tmp) == []
    import subprocess

    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert str(tmp) not in processes, "a gpg-agent (or another process) still runs with a home under TMPDIR"
