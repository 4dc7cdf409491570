"""What names an image and what describes it: references, digests, media types, and the results.

A reference is parsed once, here, into the canonical form every other module (and the lock) uses, so
``busybox`` and ``docker.io/library/busybox:latest`` are the same image everywhere; a malformed one is
a ConfigError naming it before any request is made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from offline_bundle.errors import BundleError, ConfigError


class RegistryError(BundleError):
    """A registry refused a request, or served bytes that do not match their digest."""


DEFAULT_PLATFORM = "linux/amd64"
DOCKER_HUB = "registry-1.docker.io"
DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
ACCEPT = ", ".join(MANIFEST_TYPES + INDEX_TYPES)
GZIP_LAYERS = (
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
)
REF_NAME = "org.opencontainers.image.ref.name"
REPOSITORY_ANNOTATION = "io.offline-bundle.repository"
INDEX_DIGEST_ANNOTATION = "io.offline-bundle.index-digest"

# -- references -------------------------------------------------------------------------------

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST_RE = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?")


@dataclass(frozen=True)
class ImageRef:
    registry: str  # "registry-1.docker.io" for Docker Hub names; "127.0.0.1:5000"
    repository: str  # "library/busybox" (Docker Hub short names get "library/")
    tag: str | None
    digest: str | None  # "sha256:<64 hex>"

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @property
    def name(self) -> str:
        """``host/repository``, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    def with_digest(self, digest: str) -> ImageRef:
        if not DIGEST_RE.fullmatch(digest):
            raise ConfigError(f"{self.name}: {digest!r} is not a sha256 digest")
        return replace(self, digest=digest)


def _looks_like_host(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost" or component.startswith("[")


def parse_image_ref(text: str, *, tag: str | None = None) -> ImageRef:
    """``busybox``, ``docker.io/library/busybox:1.36``, ``127.0.0.1:5000/a/b@sha256:…`` -> ImageRef.

    ``tag`` is the separate tag of a Concourse ``registry-image`` source (``repository`` + ``tag``);
    it may not contradict a tag written in ``text``. No tag and no digest means ``latest``.
    """
    original = text
    text = text.strip()
    if not text:
        raise ConfigError("an image reference is empty")
    text, digest = _split_digest(text, original)
    registry, text = _split_host(text, original)
    text, written_tag = _split_tag(text, original)
    written_tag = _merge_tag(written_tag, tag, original)
    if not REPOSITORY_RE.fullmatch(text):
        raise ConfigError(
            f"image {original!r}: repository {text!r} is not valid (lowercase letters, digits, separators . _ - /)"
        )
    if registry == DOCKER_HUB and "/" not in text:
        text = f"library/{text}"
    if len(f"{registry}/{text}") > 255:
        raise ConfigError(f"image {original!r}: the name is longer than 255 characters")
    if written_tag is None and digest is None:
        written_tag = "latest"
    return ImageRef(registry=registry, repository=text, tag=written_tag, digest=digest)


def _split_digest(text: str, original: str) -> tuple[str, str | None]:
    """``name@sha256:…`` -> (name, digest); (text, None) without one."""
    if "@" not in text:
        return text, None
    text, digest = text.split("@", 1)
    if not DIGEST_RE.fullmatch(digest):
        raise ConfigError(f"image {original!r}: {digest!r} is not a sha256:<64 lowercase hex> digest")
    return text, digest


def _split_host(text: str, original: str) -> tuple[str, str]:
    """(registry, the rest): a first component that looks like a host names the registry, else Docker Hub."""
    first, sep, rest = text.partition("/")
    if not (sep and _looks_like_host(first)):
        return DOCKER_HUB, text
    if not _HOST_RE.fullmatch(first):
        raise ConfigError(f"image {original!r}: {first!r} is not a registry host")
    return (DOCKER_HUB if first.lower() in DOCKER_HUB_ALIASES else first), rest


def _split_tag(text: str, original: str) -> tuple[str, str | None]:
    """``repository:tag`` -> (repository, tag); a colon before the last slash is not a tag's."""
    colon = text.rfind(":")
    if colon <= text.rfind("/"):
        return text, None
    text, tag = text[:colon], text[colon + 1 :]
    if not TAG_RE.fullmatch(tag):
        raise ConfigError(f"image {original!r}: {tag!r} is not a valid tag")
    return text, tag


def _merge_tag(written: str | None, given: str | None, original: str) -> str | None:
    """The separate ``tag`` wins when the reference has none, and must agree with it when it has one."""
    if given is None:
        return written
    given = str(given)
    if not TAG_RE.fullmatch(given):
        raise ConfigError(f"image {original!r}: tag {given!r} is not a valid tag")
    if written is not None and written != given:
        raise ConfigError(f"image {original!r}: tag {given!r} contradicts the tag {written!r} in the reference")
    return given


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedImage:
    ref: ImageRef  # as asked (tag kept)
    index_digest: str | None  # digest of the manifest list / OCI index, when the reference names one
    digest: str  # digest of the platform's image manifest
    media_type: str  # of that manifest
    size: int  # of that manifest


@dataclass(frozen=True)
class SavedImage:
    resolved: ResolvedImage
    oci_archive: Path  # OCI image layout as a tar (skopeo reads it as oci-archive:PATH)
    rootfs_tarball: Path | None  # gzip tar of rootfs/ + metadata.json ({"env": [...], "user": "..."})
    sha256: dict[str, str]  # file name -> SHA-256 of the files written


def split_registry(registry: str) -> tuple[str, str]:
    """``HOST[:PORT][/PREFIX]`` -> (host, prefix)."""
    host, _, prefix = registry.strip().strip("/").partition("/")
    if not (host and _HOST_RE.fullmatch(host) and _looks_like_host(host)):
        raise ConfigError(f"registry {registry!r}: expected HOST[:PORT][/PREFIX] with a dotted host or a port")
    if prefix and not REPOSITORY_RE.fullmatch(prefix):
        raise ConfigError(f"registry {registry!r}: prefix {prefix!r} is not a valid repository path")
    return host, prefix
