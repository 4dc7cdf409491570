"""Source and params parsing: every mistake is one clear line naming the key, and no value."""

from __future__ import annotations

import pytest

from offline_bundle.core.config import parse_in_params, parse_out_params, parse_source
from offline_bundle.errors import ConfigError

PUB = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEabc\n-----END PGP PUBLIC KEY BLOCK-----\n"
SEC = "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlFgEsecretmaterial\n-----END PGP PRIVATE KEY BLOCK-----\n"
BASE = {"bucket": "online", "name": "demo"}


def test_minimal_source_and_defaults() -> None:
    s = parse_source(BASE)
    assert (s.bucket, s.name, s.prefix, s.region_name, s.version_order, s.compression) == (
        "online",
        "demo",
        "",
        "us-east-1",
        "auto",
        "none",
    )
    assert s.path_style is False
    assert parse_source({**BASE, "endpoint": "http://x:1"}).path_style is True
    assert s.key("1.0", "manifest.json.asc") == "demo/1.0/manifest.json.asc"
    assert parse_source({**BASE, "prefix": "transfers/"}).key("_blobs", "") == "transfers/demo/_blobs/"
    assert parse_source({**BASE, "prefix": "team-a-"}).key("1.0", "x") == "team-a-demo/1.0/x"  # verbatim


@pytest.mark.parametrize("missing", ["bucket", "name"])
def test_missing_required_key(missing: str) -> None:
    raw = dict(BASE)
    del raw[missing]
    with pytest.raises(ConfigError, match=f"source.{missing} is required"):
        parse_source(raw)


def test_unknown_key_is_named_with_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as e:
        parse_source({**BASE, "trusted_public_key": [PUB]})
    assert "unknown key trusted_public_key" in str(e.value)
    assert "trusted_public_keys" in str(e.value)


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("allow_unsigned", "yes", "must be true or false"),
        ("bucket", 7, "must be a string"),
        ("name", "", r"source.name is required and is empty"),
        ("bucket", "  ", r"source.bucket is required and is empty"),
        ("name", "a/b", "is not valid"),
        ("name", "a..b", "is not valid"),
        ("trusted_public_keys", 3, "must be a list"),
        ("trusted_public_keys", ["not a key"], "not an ASCII-armoured OpenPGP public key"),
        ("trusted_public_keys", [SEC], "holds a secret key"),
        ("recipient_public_keys", [SEC], "holds a secret key"),
        ("signing_private_key", PUB, "holds a public key"),
        ("decryption_private_key", "garbage", "not an ASCII-armoured OpenPGP secret key"),
        ("version_order", "alphabetical", "must be one of auto, semver, created"),
        ("version_order", "arrival", "replaced by created"),
        ("compression", "zstd", "must be one of none, zlib"),
        ("prefix", "/transfers/", "must not start with '/'"),
        ("prefix", "transfers//x/", "contain '//'"),
        ("encryption_passphrase", "two\nlines", "contains a line break"),
        ("signing_private_key_passphrase", "ends with a newline\n", "contains a line break"),
        ("decryption_private_key_passphrase", "cr\r", "contains a line break"),
        ("ca_bundle", "not pem", "PEM"),
    ],
)
def test_bad_values(key: str, value: object, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_source({**BASE, key: value})


def test_conflicts_and_secret_free_messages() -> None:
    with pytest.raises(ConfigError, match="conflict"):
        parse_source({**BASE, "ca_bundle": "-----BEGIN CERTIFICATE-----\nx", "skip_ssl_verification": True})
    with pytest.raises(ConfigError) as e:
        parse_source({**BASE, "secret_access_key": "S3CRET-VALUE-123"})
    assert "S3CRET-VALUE-123" not in str(e.value)
    with pytest.raises(ConfigError) as e:
        parse_source({**BASE, "signing_private_key": SEC.replace("BEGIN PGP PRIVATE", "BEGIN PGP PUBLIC")})
    assert "secretmaterial" not in str(e.value)
    with pytest.raises(ConfigError) as e:
        parse_source({**BASE, "encryption_passphrase": "pass\nWORD-SECRET"})
    assert "WORD-SECRET" not in str(e.value)


def test_keys_given_as_one_string_are_split() -> None:
    s = parse_source({**BASE, "trusted_public_keys": PUB + PUB.replace("abc", "def")})
    assert len(s.trusted_public_keys) == 2


def test_out_params() -> None:
    p = parse_out_params(
        {"parts": [{"name": "om", "path": "om/*"}, {"name": "tile", "path": "t", "destination": "x/y"}]}
    )
    assert [(x.name, x.path, x.destination) for x in p.parts] == [("om", "om/*", "om/"), ("tile", "t", "x/y/")]
    assert (p.version, p.version_file, p.overwrite) == (None, None, False)


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({}, "params.parts is required"),
        ({"parts": []}, "params.parts is required"),
        ({"parts": [{"name": "a"}]}, r"parts\[0\].path is required"),
        ({"parts": [{"name": "a", "path": "x", "dest": "y"}]}, "unknown key dest"),
        ({"parts": [{"name": "a", "path": "x"}, {"name": "a", "path": "y"}]}, "used by two parts"),
        ({"parts": [{"name": "SHA256SUMS", "path": "x"}]}, "reserved"),
        ({"parts": [{"name": "version", "path": "x"}]}, "reserved"),
        ({"parts": [{"name": "a", "path": "x", "destination": "../up"}]}, "without '..'"),
        ({"parts": [{"name": "a", "path": "x"}], "version": "1/2"}, "is not valid"),
        ({"parts": [{"name": "a", "path": "x"}], "version": "../1"}, "is not valid"),
        ({"parts": [{"name": "a", "path": "x"}], "version": 1.5}, "must be a string"),
        ({"parts": [{"name": "a", "path": "x"}], "version": "1", "version_file": "v"}, "conflict"),
        ({"parts": [{"name": "a", "path": "x"}], "overwrite": "yes"}, "true or false"),
    ],
)
def test_bad_out_params(params: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_out_params(params)


def test_in_params() -> None:
    assert parse_in_params(None).parts is None
    p = parse_in_params({"parts": ["a", "b"], "skip_download": True})
    assert (p.parts, p.skip_download) == (("a", "b"), True)
    with pytest.raises(ConfigError, match="unknown key"):
        parse_in_params({"part": ["a"]})
    with pytest.raises(ConfigError, match="non-empty list"):
        parse_in_params({"parts": "a"})


# ------------------------------------------------------------------------------ empty means absent


@pytest.mark.parametrize(
    "key",
    [
        "prefix",
        "endpoint",
        "region_name",
        "session_token",
        "use_path_style",
        "disable_ssl",
        "skip_ssl_verification",
        "ca_bundle",
        "recipient_public_keys",
        "encryption_passphrase",
        "allow_unencrypted",
        "compression",
        "signing_private_key",
        "signing_private_key_passphrase",
        "decryption_private_key",
        "decryption_private_key_passphrase",
        "trusted_public_keys",
        "allow_unsigned",
        "version_order",
    ],
)
def test_an_empty_source_value_is_absent(key: str) -> None:
    assert parse_source({**BASE, key: ""}) == parse_source(BASE)
    assert parse_source({**BASE, key: None}) == parse_source(BASE)


def test_empty_credentials_are_absent_as_a_pair() -> None:
    assert parse_source({**BASE, "access_key_id": "", "secret_access_key": ""}) == parse_source(BASE)


def test_a_blank_passphrase_is_a_value_other_blanks_are_absent() -> None:
    assert parse_source({**BASE, "encryption_passphrase": "  "}).encryption_passphrase == "  "
    assert parse_source({**BASE, "endpoint": " \n"}).endpoint is None


def test_an_empty_list_of_keys_is_absent_an_empty_item_is_named() -> None:
    assert parse_source({**BASE, "trusted_public_keys": []}).trusted_public_keys == ()
    with pytest.raises(ConfigError, match=r"source.trusted_public_keys\[1\] is empty \(an unset \(\(var\)\)\?\)"):
        parse_source({**BASE, "trusted_public_keys": [PUB, ""]})
    with pytest.raises(ConfigError, match=r"source.recipient_public_keys\[0\] is empty"):
        parse_source({**BASE, "recipient_public_keys": [None]})


def test_empty_params_are_absent() -> None:
    parts = [{"name": "a", "path": "x"}]
    p = parse_out_params({"parts": parts, "version": "", "version_file": "", "overwrite": ""})
    assert (p.version, p.version_file, p.overwrite) == (None, None, False)
    assert parse_out_params({"parts": parts, "version": "", "version_file": "v"}).version_file == "v"
    with pytest.raises(ConfigError, match=r"params.parts\[0\].path is required"):
        parse_out_params({"parts": [{"name": "a", "path": ""}]})
    assert parse_in_params({"parts": "", "skip_download": ""}) == parse_in_params(None)
    with pytest.raises(ConfigError, match=r"params.parts\[1\] must not be empty"):
        parse_in_params({"parts": ["a", ""]})


def test_an_empty_destination_still_means_the_root_of_the_target() -> None:
    p = parse_out_params({"parts": [{"name": "a", "path": "x", "destination": ""}, {"name": "b", "path": "y"}]})
    assert [x.destination for x in p.parts] == ["", "b/"]


# ----------------------------------------------------------------------------- keys in any form

FPR_LINE = "fingerprint: 0123456789ABCDEF0123456789ABCDEF01234567\n"


@pytest.mark.parametrize("form", ["string", "list item"])
def test_a_key_saved_with_lines_around_it_reads_the_same_in_every_form(form: str) -> None:
    text = FPR_LINE + PUB + "\n# a comment after it\n"
    value = text if form == "string" else [text]
    assert parse_source({**BASE, "trusted_public_keys": value}).trusted_public_keys == (PUB,)
    assert parse_source({**BASE, "recipient_public_keys": value}).recipient_public_keys == (PUB,)


def test_a_list_item_may_hold_several_keys() -> None:
    other = PUB.replace("abc", "def")
    assert parse_source({**BASE, "trusted_public_keys": [PUB + other, PUB]}).trusted_public_keys == (PUB, other, PUB)


def test_a_secret_key_with_lines_around_it() -> None:
    s = parse_source({**BASE, "signing_private_key": "saved from a terminal\n" + SEC + "\n"})
    assert s.signing_private_key == SEC


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("trusted_public_keys", [FPR_LINE + SEC], r"trusted_public_keys\[0\] holds a secret key"),
        ("trusted_public_keys", PUB + SEC, r"source.trusted_public_keys holds a secret key"),
        ("trusted_public_keys", [PUB[:40]], r"is cut short: no -----END PGP PUBLIC KEY BLOCK----- line"),
        ("trusted_public_keys", ["fingerprint: ABCD"], r"trusted_public_keys\[0\] is not an ASCII-armoured"),
        ("decryption_private_key", SEC + SEC, "holds 2 secret key blocks"),
        ("decryption_private_key", FPR_LINE + PUB, "holds a public key"),
    ],
)
def test_keys_that_are_refused(key: str, value: object, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as e:
        parse_source({**BASE, key: value})
    assert "secretmaterial" not in str(e.value)
