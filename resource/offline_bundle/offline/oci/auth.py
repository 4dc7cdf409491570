"""Who may read a registry: ``WWW-Authenticate`` challenges, Docker ``config.json`` logins, loopback hosts.

Only a Docker ``config.json``'s ``auths`` are read (credential helpers are not run), and a registry
whose login cannot be used is remembered with the reason, so a refusal names it instead of saying
"unauthorized". Nothing here logs a credential.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offline_bundle.errors import ConfigError
from offline_bundle.offline.oci.reference import DOCKER_HUB, DOCKER_HUB_ALIASES

# -- WWW-Authenticate -------------------------------------------------------------------------

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_CHALLENGE_PART = re.compile(rf'\s*(?:({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)|({_TOKEN}))\s*,?')


def parse_challenges(header: str) -> list[tuple[str, dict[str, str]]]:
    """``Bearer realm="…",service="…",scope="…"`` (possibly several challenges) -> [(scheme, params)].

    The scheme is lower-cased, parameter names too; quoted values are unescaped.
    """
    challenges: list[tuple[str, dict[str, str]]] = []
    pos = 0
    while pos < len(header):
        m = _CHALLENGE_PART.match(header, pos)
        if not m or m.end() == pos:
            break
        pos = m.end()
        key, value, scheme = m.group(1), m.group(2), m.group(3)
        if scheme is not None:
            challenges.append((scheme.lower(), {}))
            # A scheme may be directly followed (after a space) by its first parameter.
            continue
        if not challenges:
            continue
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        challenges[-1][1][key.lower()] = value
    return challenges


# -- Docker config.json -----------------------------------------------------------------------


def _config_host(key: str) -> str:
    """An ``auths`` key (``https://index.docker.io/v1/``, ``host:5000``, ``http://host/v2/``) -> host."""
    if "://" in key:
        key = key.split("://", 1)[1]
    host = key.split("/", 1)[0].lower()
    return DOCKER_HUB if host in DOCKER_HUB_ALIASES else host


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def docker_config_path(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return explicit
    env = os.environ.get("DOCKER_CONFIG")
    if env:
        return Path(env) / "config.json"
    return Path.home() / ".docker" / "config.json"


def load_docker_credentials(path: Path) -> tuple[dict[str, Credentials], dict[str, str]]:
    """(host -> credentials, host -> why there are none usable) from a Docker ``config.json``.

    A missing file means anonymous. The second map explains registries whose entry cannot be used
    (a credential helper, an identity token), so a refusal can say why instead of "unauthorized".
    """
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}, {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Docker config {path}: cannot read it as JSON ({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"Docker config {path}: not a JSON object")
    creds: dict[str, Credentials] = {}
    unusable: dict[str, str] = {}
    helpers = doc.get("credHelpers") or {}
    if isinstance(helpers, dict):
        for key, helper in helpers.items():
            unusable[_config_host(str(key))] = (
                f"{path} names credential helper docker-credential-{helper} for it; "
                "credential helpers are not supported, put the login in auths"
            )
    for key, entry in (doc.get("auths") or {}).items():
        if isinstance(entry, dict):
            _read_auth(path, str(key), entry, creds, unusable)
    store = doc.get("credsStore")
    if store:
        unusable.setdefault(
            "*", f"{path} uses credential store docker-credential-{store}; credential helpers are not supported"
        )
    return creds, unusable


def _read_auth(
    path: Path, key: str, entry: dict[str, Any], creds: dict[str, Credentials], unusable: dict[str, str]
) -> None:
    """One ``auths`` entry into ``creds``, or into ``unusable`` when it holds only an identity token."""
    host = _config_host(key)
    user = entry.get("username")
    password = entry.get("password")
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(str(entry["auth"])).decode().partition(":")
        except ValueError:
            raise ConfigError(f"Docker config {path}: auths.{key}.auth is not base64 of user:password") from None
    if user and password is not None:
        creds[host] = Credentials(str(user), str(password))
    elif entry.get("identitytoken"):
        unusable.setdefault(host, f"{path} has only an identity token for it, which is not supported")


# -- hosts ------------------------------------------------------------------------------------


def hostname(registry: str) -> str:
    if registry.startswith("["):
        return registry[1 : registry.index("]")]
    return registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry


def is_loopback(registry: str) -> bool:
    host = hostname(registry).lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
