"""GitHub releases for the connected side: the release a Concourse ``github-release`` source names.

The choice of release follows the resource's own ``check`` (drafts, ``pre_release``, ``release``,
``tag_filter``, ``order_by``), so pin locks the version the pipeline would have run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from offline_bundle.core.log import Log
from offline_bundle.core.versions import semver_key
from offline_bundle.errors import ConfigError
from offline_bundle.offline.remote.common import HEX64, RemoteError, check_scheme, quiet, reason, redact_url
from offline_bundle.offline.remote.http import DEFAULT_TIMEOUT, ca_file

DEFAULT_GITHUB_API = "https://api.github.com/"
DEFAULT_TAG_FILTER = r"v?([^v].*)"  # the github-release resource's default
MAX_RELEASE_PAGES = 20


@dataclass(frozen=True)
class Asset:
    name: str
    url: str  # browser_download_url: public, redirects to the file
    size: int
    sha256: str | None  # from the API's "digest" ("sha256:…") when GitHub gives one
    api_url: str | None = None  # the asset's API URL: with Accept: application/octet-stream, works with a token


def github_headers(source: Mapping[str, Any]) -> dict[str, str]:
    """Headers for the GitHub REST API (and for downloading an asset's ``api_url`` of a private repository)."""
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
    if source.get("access_token"):
        headers["Authorization"] = f"Bearer {source['access_token']}"
    return headers


def asset_request(asset: Asset, source: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """URL and headers to download ``asset``: with an ``access_token``, the asset's API URL (the only one that
    works for a private repository; GitHub redirects to storage elsewhere and requests drops the token on
    the way), else the public ``browser_download_url``."""
    if source.get("access_token") and asset.api_url:
        return asset.api_url, {**github_headers(source), "Accept": "application/octet-stream"}
    return asset.url, {}


def release_version(tag: str, tag_filter: str | None) -> str | None:
    """The version a tag stands for under ``tag_filter`` (its first group, else the whole match); None if no match."""
    try:
        m = re.search(tag_filter or DEFAULT_TAG_FILTER, tag)
    except re.error as e:
        raise ConfigError(f"tag_filter {tag_filter!r} is not a regular expression: {e}") from None
    if not m:
        return None
    return m.group(1) if m.groups() and m.group(1) is not None else m.group(0)


def choose_release(releases: list[Mapping[str, Any]], source: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The newest release the github-release resource's ``check`` would report for ``source``.

    Drafts never; pre-releases only with ``pre_release: true``; full releases unless ``release: false``;
    the tag must match ``tag_filter``. Newest by SemVer of the version when every candidate has one
    (``order_by: version``, the default), else (or with ``order_by: time``) by creation time.
    """
    want_pre = bool(source.get("pre_release", False))
    want_full = source.get("release", True) is not False
    candidates: list[tuple[Mapping[str, Any], str]] = []
    for r in releases:
        if r.get("draft"):
            continue
        if r.get("prerelease") and not want_pre:
            continue
        if not r.get("prerelease") and not want_full:
            continue
        tag = str(r.get("tag_name") or "")
        version = release_version(tag, source.get("tag_filter"))
        if not tag or version is None:
            continue
        candidates.append((r, version))
    if not candidates:
        return None
    keyed = [(key, r) for r, v in candidates if (key := semver_key(v)) is not None]
    if source.get("order_by", "version") == "version" and len(keyed) == len(candidates):
        return max(keyed, key=lambda kr: kr[0])[1]
    return max(candidates, key=lambda c: (str(c[0].get("created_at") or ""), int(c[0].get("id") or 0)))[0]


def _assets(release: Mapping[str, Any]) -> list[Asset]:
    out = []
    for a in release.get("assets") or []:
        digest = a.get("digest")
        sha = None
        if isinstance(digest, str) and digest.lower().startswith("sha256:") and HEX64.match(digest[7:].lower()):
            sha = digest[7:].lower()
        out.append(Asset(str(a["name"]), str(a["browser_download_url"]), int(a.get("size") or 0), sha, a.get("url")))
    return out


def github_release_assets(
    source: Mapping[str, Any],
    *,
    tag: str | None,
    session: requests.Session | None = None,
    ca_bundle: str | None = None,
    log: Log = quiet,
) -> tuple[str, list[Asset]]:
    """The release of a Concourse ``github-release`` source: ``tag`` when given, else the newest that
    ``choose_release`` picks. Returns (tag, assets); filtering assets by ``globs`` is the caller's."""
    owner, repo = source.get("owner"), source.get("repository")
    if not owner or not repo:
        raise ConfigError("github-release source: owner and repository are required")
    api = str(source.get("github_api_url") or DEFAULT_GITHUB_API)
    if not api.endswith("/"):
        api += "/"
    check_scheme(api)
    releases = _Releases(
        session=session or requests.Session(),
        headers=github_headers(source),
        verify=ca_file(ca_bundle) if ca_bundle else None,
        name=f"{owner}/{repo}",
        base=f"{api}repos/{quote(str(owner), safe='')}/{quote(str(repo), safe='')}/releases",
    )
    release = releases.by_tag(tag) if tag else releases.newest(source)
    found = str(release["tag_name"])
    assets = _assets(release)
    log(f"GitHub release {found} of {releases.name}: {len(assets)} assets")
    return found, assets


@dataclass(frozen=True)
class _Releases:
    """The releases endpoint of one repository, asked with the source's token and CA bundle."""

    session: requests.Session
    headers: dict[str, str]
    verify: str | None
    name: str  # owner/repository, for messages
    base: str  # .../repos/OWNER/REPOSITORY/releases

    def get(self, url: str) -> requests.Response:
        try:
            kwargs: dict[str, Any] = {"headers": self.headers, "timeout": DEFAULT_TIMEOUT}
            if self.verify:
                kwargs["verify"] = self.verify
            resp = self.session.get(url, **kwargs)
        except requests.exceptions.RequestException as e:
            raise RemoteError(f"GitHub releases of {self.name} ({redact_url(url)}): {reason(e)}") from None
        if resp.status_code in (401, 403):
            hint = " (rate limit? set access_token)" if resp.headers.get("X-RateLimit-Remaining") == "0" else ""
            raise RemoteError(f"GitHub releases of {self.name}: HTTP {resp.status_code} from {redact_url(url)}{hint}")
        return resp

    def by_tag(self, tag: str) -> Mapping[str, Any]:
        resp = self.get(f"{self.base}/tags/{quote(tag, safe='')}")
        if resp.status_code == 404:
            raise RemoteError(f"GitHub release {tag!r} of {self.name}: not found")
        if resp.status_code != 200:
            raise RemoteError(f"GitHub release {tag!r} of {self.name}: HTTP {resp.status_code}")
        release: Mapping[str, Any] = resp.json()
        if release.get("draft"):
            raise RemoteError(f"GitHub release {tag!r} of {self.name}: is a draft")
        return release

    def newest(self, source: Mapping[str, Any]) -> Mapping[str, Any]:
        """What ``choose_release`` picks among the first ``MAX_RELEASE_PAGES`` pages of releases."""
        releases: list[Mapping[str, Any]] = []
        url: str | None = f"{self.base}?per_page=100"
        for _ in range(MAX_RELEASE_PAGES):
            if not url:
                break
            resp = self.get(url)
            if resp.status_code != 200:
                raise RemoteError(f"GitHub releases of {self.name}: HTTP {resp.status_code}")
            releases.extend(resp.json())
            url = resp.links.get("next", {}).get("url")
        chosen = choose_release(releases, source)
        if chosen is None:
            raise RemoteError(
                f"GitHub releases of {self.name}: none matches (drafts, pre_release, release, tag_filter)"
            )
        return chosen
