"""Typed ``source`` and ``params`` (docs/reference.md), parsed by pure functions.

Concourse hands us whatever YAML the pipeline author wrote; a typo in a key must fail loudly
(an ignored ``allow_unsigned`` or a misspelt ``trusted_public_keys`` is a security bug), so
unknown keys, wrong types and missing required keys are refused with a line naming the key.
No message ever contains a value: values may be secrets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any

from offline_bundle.core.names import check_name, check_part_name
from offline_bundle.errors import ConfigError

PUBLIC_KEY_HEADER = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
SECRET_KEY_HEADER = "-----BEGIN PGP PRIVATE KEY BLOCK-----"
VERSION_ORDERS = ("auto", "semver", "created")
COMPRESSIONS = ("none", "zlib")


@dataclass(frozen=True)
class Source:
    bucket: str
    name: str
    prefix: str = ""
    endpoint: str | None = None
    region_name: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    use_path_style: bool | None = None
    disable_ssl: bool = False
    skip_ssl_verification: bool = False
    ca_bundle: str | None = None
    recipient_public_keys: tuple[str, ...] = ()
    encryption_passphrase: str | None = None
    allow_unencrypted: bool = False
    compression: str = "none"
    signing_private_key: str | None = None
    signing_private_key_passphrase: str | None = None
    decryption_private_key: str | None = None
    decryption_private_key_passphrase: str | None = None
    trusted_public_keys: tuple[str, ...] = ()
    allow_unsigned: bool = False
    version_order: str = "auto"
    approver_public_keys: tuple[str, ...] = ()
    required_approvals: int = 0

    @property
    def path_style(self) -> bool:
        if self.use_path_style is not None:
            return self.use_path_style
        return self.endpoint is not None

    @property
    def encrypts(self) -> bool:
        return bool(self.recipient_public_keys) or self.encryption_passphrase is not None

    def key(self, *parts: str) -> str:
        """The object key of ``parts`` below this resource's bundle folder."""
        return self.prefix + "/".join((self.name, *parts))

    def secret_values(self) -> list[str]:
        """Every configured value that must never be printed."""
        values = [
            self.secret_access_key,
            self.session_token,
            self.encryption_passphrase,
            self.signing_private_key,
            self.signing_private_key_passphrase,
            self.decryption_private_key,
            self.decryption_private_key_passphrase,
        ]
        return [v for v in values if v]


SECRET_KEYS = frozenset(
    {
        "secret_access_key",
        "session_token",
        "encryption_passphrase",
        "signing_private_key",
        "signing_private_key_passphrase",
        "decryption_private_key",
        "decryption_private_key_passphrase",
    }
)
REQUIRED_SOURCE_KEYS = ("bucket", "name")
SOURCE_KEYS = tuple(f.name for f in fields(Source))
# Keys whose values only need the S3 side (publish targets): everything else is optional anyway.
S3_KEYS = (
    "bucket",
    "prefix",
    "endpoint",
    "region_name",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "use_path_style",
    "disable_ssl",
    "skip_ssl_verification",
    "ca_bundle",
)

_BOOL_KEYS = {"use_path_style", "disable_ssl", "skip_ssl_verification", "allow_unencrypted", "allow_unsigned"}
_LIST_KEYS = {"recipient_public_keys", "trusted_public_keys", "approver_public_keys"}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "list", dict: "map"}.get(
        type(value), type(value).__name__
    )


def _want_string(where: str, key: str, value: Any, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key} must be a string, not a {_type_name(value)}")
    if not allow_empty and not value.strip():
        raise ConfigError(f"{where}.{key} must not be empty")
    return value


def _want_bool(where: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key} must be true or false, not a {_type_name(value)}")
    return value


def _want_count(where: str, key: str, value: Any) -> int:
    """A whole number >= 0; digits in a string too (environment variables and credential managers hold text)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{where}.{key} must be a whole number, not a {_type_name(value)}")
    if value < 0:
        raise ConfigError(f"{where}.{key} must be 0 or more")
    return value


def _check_keys(where: str, given: dict[str, Any], valid: tuple[str, ...]) -> None:
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ConfigError(
            f"{where} has unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"valid keys: {', '.join(valid)}"
        )


def split_armored(text: str, header: str) -> list[str]:
    """Every armoured block of one kind inside ``text``: lines around them (``fingerprint: ...``
    before a key saved from a terminal, comments) never matter, and one string may hold several."""
    footer = header.replace("BEGIN", "END")
    return [m.group(0) for m in re.finditer(re.escape(header) + ".*?" + re.escape(footer), text, re.DOTALL)]


def _not_armored(where: str, key: str, text: str, *, secret: bool) -> ConfigError:
    want = SECRET_KEY_HEADER if secret else PUBLIC_KEY_HEADER
    what = "secret" if secret else "public"
    if want in text:
        footer = want.replace("BEGIN", "END")
        return ConfigError(f"{where}.{key} is cut short: no {footer} line after its {want} line")
    return ConfigError(f"{where}.{key} is not an ASCII-armoured OpenPGP {what} key (no {want} line)")


def _public_keys(where: str, key: str, text: str) -> list[str]:
    """The public key blocks in one value; a secret key here is refused, never imported."""
    if SECRET_KEY_HEADER in text:
        raise ConfigError(f"{where}.{key} holds a secret key; expected an ASCII-armoured public key")
    blocks = split_armored(text, PUBLIC_KEY_HEADER)
    if not blocks:
        raise _not_armored(where, key, text, secret=False)
    return [b + "\n" for b in blocks]


def _secret_key(where: str, key: str, text: str) -> str:
    blocks = split_armored(text, SECRET_KEY_HEADER)
    if not blocks:
        if PUBLIC_KEY_HEADER in text and SECRET_KEY_HEADER not in text:
            raise ConfigError(f"{where}.{key} holds a public key; expected an ASCII-armoured secret key")
        raise _not_armored(where, key, text, secret=True)
    if len(blocks) > 1:
        raise ConfigError(f"{where}.{key} holds {len(blocks)} secret key blocks; give exactly one")
    return blocks[0] + "\n"


# Passphrases may be made of blanks; any other value that is only white space counts as empty.
_VERBATIM_KEYS = {"encryption_passphrase", "signing_private_key_passphrase", "decryption_private_key_passphrase"}


def is_empty(key: str, value: Any) -> bool:
    """Null and the empty string mean absent: credential managers cannot store null, and an unset
    ``((var))`` arrives as ``""``."""
    if value is None:
        return True
    if not isinstance(value, str):
        return False
    return value == "" if key in _VERBATIM_KEYS else not value.strip()


PASSPHRASE_KEYS = ("encryption_passphrase", "signing_private_key_passphrase", "decryption_private_key_passphrase")


def _check_prefix(where: str, prefix: str) -> None:
    """A prefix is prepended verbatim (``transfers/`` for a folder, ``team-a-`` for a name prefix).

    A leading ``/`` or an empty segment (``//``) is refused: stores that normalise keys store such
    objects under another key than the one listed, and ``check`` would never see what ``out`` put.
    """
    if prefix.startswith("/") or "//" in prefix:
        raise ConfigError(
            f"{where}.prefix {prefix!r} must not start with '/' or contain '//': some stores rewrite such keys, "
            "and check would not find what out stored (write transfers/, not /transfers/)"
        )


def parse_source(raw: Any, *, where: str = "source", s3_only: bool = False) -> Source:
    """Validate a ``source`` map; ``s3_only`` accepts a publish target without ``name``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a map, not a {_type_name(raw)}")
    _check_keys(where, raw, S3_KEYS if s3_only else SOURCE_KEYS)
    for key in ("bucket",) if s3_only else REQUIRED_SOURCE_KEYS:
        if key not in raw or raw[key] is None:
            raise ConfigError(f"{where}.{key} is required")
        if is_empty(key, raw[key]):
            raise ConfigError(f"{where}.{key} is required and is empty (an unset ((var))?)")
    values = {
        key: _source_value(where, key, value)
        for key, value in raw.items()
        if not (is_empty(key, value) or (key in _LIST_KEYS and value == []))
    }
    if not s3_only:
        check_name(values["name"], f"{where}.name")
    else:
        values.setdefault("name", "-")
    bucket = values["bucket"]
    if not (3 <= len(bucket) <= 63) or bucket != bucket.strip() or "/" in bucket:
        raise ConfigError(f"{where}.bucket {bucket!r} is not a valid bucket name")
    _check_prefix(where, values.get("prefix", ""))
    _check_passphrases(where, values)
    _check_tls(where, values)
    _check_choices(where, values)
    _check_pairs(where, values)
    return Source(**values)


def _source_value(where: str, key: str, value: Any) -> Any:
    """One key's value, of the type ``Source`` holds; refused with a line naming the key."""
    if key in _BOOL_KEYS:
        return _want_bool(where, key, value)
    if key in _LIST_KEYS:
        return _public_key_list(where, key, value)
    if key in ("signing_private_key", "decryption_private_key"):
        return _secret_key(where, key, _want_string(where, key, value))
    if key == "prefix":
        return _want_string(where, key, value, allow_empty=True)
    if key == "required_approvals":  # (an unset ((var)) arrives as "": absent, like any empty value)
        return _want_count(where, key, value)
    return _want_string(where, key, value, allow_empty=key in _VERBATIM_KEYS)


def _public_key_list(where: str, key: str, value: Any) -> tuple[str, ...]:
    """A list of armoured public keys; one string stands for a list of one (and is named without [0])."""
    one = isinstance(value, str)
    items = [value] if one else value
    if not isinstance(items, list):
        raise ConfigError(f"{where}.{key} must be a list of armoured public keys")
    keys = []
    for i, item in enumerate(items):
        item_key = f"{key}[{i}]" if len(items) > 1 or not one else key
        if is_empty(key, item):
            raise ConfigError(f"{where}.{item_key} is empty (an unset ((var))?): give the key or remove the item")
        keys += _public_keys(where, item_key, _want_string(where, item_key, item))
    return tuple(keys)


def _check_passphrases(where: str, values: dict[str, Any]) -> None:
    for key in PASSPHRASE_KEYS:
        if "\n" in values.get(key, "") or "\r" in values.get(key, ""):
            raise ConfigError(
                f"{where}.{key} contains a line break, which gpg cannot take (it reads a passphrase as one line); "
                "a YAML `|` block adds one at the end: use `|-` or a quoted string"
            )


def _check_tls(where: str, values: dict[str, Any]) -> None:
    if values.get("ca_bundle") and values.get("skip_ssl_verification"):
        raise ConfigError(f"{where}.ca_bundle and {where}.skip_ssl_verification conflict: choose one")
    if values.get("ca_bundle") and "-----BEGIN CERTIFICATE-----" not in values["ca_bundle"]:
        raise ConfigError(f"{where}.ca_bundle must hold PEM certificates (no BEGIN CERTIFICATE line)")


def _check_choices(where: str, values: dict[str, Any]) -> None:
    if values.get("version_order") == "arrival":
        raise ConfigError(
            f"{where}.version_order: arrival was replaced by created (the signed creation time): arrival "
            "order came from object times and metadata, which whoever can write to the bucket can set"
        )
    if values.get("version_order", "auto") not in VERSION_ORDERS:
        raise ConfigError(f"{where}.version_order must be one of {', '.join(VERSION_ORDERS)}")
    if values.get("compression", "none") not in COMPRESSIONS:
        raise ConfigError(f"{where}.compression must be one of {', '.join(COMPRESSIONS)}")


def _check_pairs(where: str, values: dict[str, Any]) -> None:
    """Settings that only work together: enough approver keys, both halves of the access key."""
    if values.get("required_approvals", 0) > len(values.get("approver_public_keys", ())):
        raise ConfigError(
            f"{where}.required_approvals is {values['required_approvals']} but {where}.approver_public_keys "
            f"lists {len(values.get('approver_public_keys', ()))} key(s): no version could ever be approved"
        )
    if values.get("secret_access_key") and not values.get("access_key_id"):
        raise ConfigError(f"{where}.secret_access_key is set but {where}.access_key_id is not")
    if values.get("access_key_id") and not values.get("secret_access_key"):
        raise ConfigError(f"{where}.access_key_id is set but {where}.secret_access_key is not")


@dataclass(frozen=True)
class PartSpec:
    name: str
    path: str
    destination: str


@dataclass(frozen=True)
class OutParams:
    parts: tuple[PartSpec, ...]
    version: str | None = None
    version_file: str | None = None
    overwrite: bool = False


@dataclass(frozen=True)
class InParams:
    parts: tuple[str, ...] | None = None
    skip_download: bool = False


OUT_PARAM_KEYS = ("parts", "version", "version_file", "overwrite")
PART_KEYS = ("name", "path", "destination")
IN_PARAM_KEYS = ("parts", "skip_download")


def check_destination(value: str, where: str) -> str:
    """A destination is a key prefix on the far side: relative, no '..' segment, ends with '/'."""
    if value.startswith("/") or any(seg == ".." for seg in value.split("/")) or "\\" in value:
        raise ConfigError(f"{where} {value!r} must be a relative key prefix without '..'")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value):  # as names in a part: a get refuses them
        raise ConfigError(f"{where} {value!r} must not contain control characters")
    if value and not value.endswith("/"):
        value += "/"
    return value


def _params_map(raw: Any, valid: tuple[str, ...]) -> dict[str, Any]:
    """A step's ``params``: a map (absent is empty) of known keys, without the ones left empty."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"params must be a map, not a {_type_name(raw)}")
    _check_keys("params", raw, valid)
    return {k: v for k, v in raw.items() if not is_empty(k, v)}


def parse_out_params(raw: Any) -> OutParams:
    where = "params"
    raw = _params_map(raw, OUT_PARAM_KEYS)
    parts_raw = raw.get("parts")
    if not isinstance(parts_raw, list) or not parts_raw:
        raise ConfigError(f"{where}.parts is required: a non-empty list of {{name, path, destination?}}")
    seen: set[str] = set()
    parts = [_part_spec(f"{where}.parts[{i}]", item, seen) for i, item in enumerate(parts_raw)]
    version = raw.get("version")
    version_file = raw.get("version_file")
    if version is not None and version_file is not None:
        raise ConfigError(f"{where}.version and {where}.version_file conflict: give one")
    if version is not None:
        if isinstance(version, (int, float)) and not isinstance(version, bool):
            raise ConfigError(f'{where}.version must be a string (quote it: "{version}")')
        check_name(_want_string(where, "version", version), f"{where}.version")
    if version_file is not None:
        _want_string(where, "version_file", version_file)
    overwrite = _want_bool(where, "overwrite", raw["overwrite"]) if "overwrite" in raw else False
    return OutParams(parts=tuple(parts), version=version, version_file=version_file, overwrite=overwrite)


def _part_spec(w: str, item: Any, seen: set[str]) -> PartSpec:
    """One item of ``params.parts``; ``seen`` holds the names so far, case folded."""
    if not isinstance(item, dict):
        raise ConfigError(f"{w} must be a map with name and path")
    _check_keys(w, item, PART_KEYS)
    for key in ("name", "path"):
        if is_empty(key, item.get(key)):
            raise ConfigError(f"{w}.{key} is required")
    name = check_part_name(_want_string(w, "name", item["name"]))
    if name.casefold() in seen:  # one folder on a case-insensitive destination
        raise ConfigError(f"{w}.name {name!r} is used by two parts (names differing only in case count as one)")
    seen.add(name.casefold())
    path = _want_string(w, "path", item["path"])
    # The one value where "" is not "absent": the empty key prefix publishes at the target's root.
    destination = item.get("destination")
    if destination is None:
        destination = name + "/"
    destination = check_destination(_want_string(w, "destination", destination, allow_empty=True), f"{w}.destination")
    return PartSpec(name=name, path=path, destination=destination)


def parse_in_params(raw: Any) -> InParams:
    where = "params"
    raw = _params_map(raw, IN_PARAM_KEYS)
    parts = raw.get("parts")
    if parts is not None:
        if not isinstance(parts, list) or not parts:
            raise ConfigError(f"{where}.parts must be a non-empty list of part names")
        parts = tuple(check_part_name(_want_string(where, f"parts[{i}]", p)) for i, p in enumerate(parts))
    skip = _want_bool(where, "skip_download", raw["skip_download"]) if "skip_download" in raw else False
    return InParams(parts=parts, skip_download=skip)


@dataclass(frozen=True)
class BuildInfo:
    """Provenance from Concourse's ``BUILD_*`` variables (absent in ``check`` and partly in fly execute)."""

    values: dict[str, str] = field(default_factory=dict)

    VARIABLES = (
        "BUILD_ID",
        "BUILD_NAME",
        "BUILD_JOB_NAME",
        "BUILD_PIPELINE_NAME",
        "BUILD_PIPELINE_INSTANCE_VARS",
        "BUILD_TEAM_NAME",
        "BUILD_CREATED_BY",
        "ATC_EXTERNAL_URL",
    )

    @classmethod
    def from_env(cls, env: dict[str, str]) -> BuildInfo:
        return cls({k.lower(): env[k] for k in cls.VARIABLES if env.get(k)})

    def describe(self) -> str:
        v = self.values
        if not v:
            return "-"
        if "build_pipeline_name" in v:
            return "{}/{}/{} #{}".format(
                v.get("build_team_name", "?"),
                v["build_pipeline_name"],
                v.get("build_job_name", "?"),
                v.get("build_name", "?"),
            )
        return "one-off build {} ({})".format(v.get("build_id", "?"), v.get("build_team_name", "?"))
