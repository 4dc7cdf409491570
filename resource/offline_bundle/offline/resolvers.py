"""What pin asks the outside world (an image's digest, a ref's commit, a task file, a release's assets).

The Pinner sees only the ``Resolvers`` protocol, so its rewrite is tested without a network; the live
implementation asks the registry, git and the GitHub API and remembers each answer for the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from offline_bundle.core.log import Log
from offline_bundle.offline.oci.reference import parse_image_ref
from offline_bundle.offline.oci.registry import RegistryClient
from offline_bundle.offline.remote.git import git_read_file, git_resolve
from offline_bundle.offline.remote.github import github_release_assets


@dataclass(frozen=True)
class ImageIdentity:
    repository: str  # "host/path" as the registry client spells it canonically
    tag: str | None
    index_digest: str | None
    digest: str


@dataclass(frozen=True)
class FileIdentity:
    name: str
    url: str
    size: int | None
    sha256: str | None
    api_url: str | None = None  # GitHub: the asset's API URL, the one a token can download from


class Resolvers(Protocol):
    """What ``pin`` asks the outside world; the real one is ``LiveResolvers`` (registry, git, GitHub API)."""

    def image(self, reference: str, tag: str | None, digest: str | None) -> ImageIdentity: ...

    def git_commit(self, uri: str, ref: str | None, private_key: str | None) -> str: ...

    def git_file(self, uri: str, commit: str, path: str, private_key: str | None) -> bytes: ...

    def github_release(self, source: Mapping[str, Any], tag: str | None) -> tuple[str, list[FileIdentity]]: ...


class LiveResolvers:
    """The real registry (``oci``), git (``remote``) and GitHub API; caches answers for one run."""

    def __init__(
        self,
        *,
        insecure_registries: tuple[str, ...] = (),
        cache_dir: Path | None = None,
        ca_bundle: str | None = None,
        log: Log,
    ) -> None:
        self.log = log
        self.ca_bundle = ca_bundle
        self.registry = RegistryClient(insecure_registries=insecure_registries, log=log)
        self.cache_dir = cache_dir
        self._images: dict[tuple[str, str | None, str | None], ImageIdentity] = {}
        self._commits: dict[tuple[str, str | None], str] = {}

    def image(self, reference: str, tag: str | None, digest: str | None) -> ImageIdentity:
        key = (reference, tag, digest)
        if key not in self._images:
            ref = parse_image_ref(reference, tag=tag)
            if digest:
                ref = ref.with_digest(digest)
            resolved = self.registry.resolve(ref)
            self._images[key] = ImageIdentity(
                repository=f"{ref.registry}/{ref.repository}",
                tag=ref.tag,
                index_digest=resolved.index_digest,
                digest=resolved.digest,
            )
        return self._images[key]

    def git_commit(self, uri: str, ref: str | None, private_key: str | None) -> str:
        key = (uri, ref)
        if key not in self._commits:
            self._commits[key] = git_resolve(uri, ref, log=self.log, cache_dir=self.cache_dir, **_key_arg(private_key))
        return self._commits[key]

    def git_file(self, uri: str, commit: str, path: str, private_key: str | None) -> bytes:
        return git_read_file(uri, commit, path, cache_dir=self.cache_dir, **_key_arg(private_key))

    def github_release(self, source: Mapping[str, Any], tag: str | None) -> tuple[str, list[FileIdentity]]:
        release_tag, assets = github_release_assets(source, tag=tag, ca_bundle=self.ca_bundle, log=self.log)
        return release_tag, [FileIdentity(a.name, a.url, a.size, a.sha256, a.api_url) for a in assets]


def _key_arg(private_key: str | None) -> dict[str, str]:
    return {"private_key": private_key} if private_key else {}
