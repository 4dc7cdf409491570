"""Commit objects (docs/format.md): where they live, how they are listed, how they are trusted.

A version exists exactly when its commit object does; it is written last, so a reader never
sees a half-uploaded bundle as a version. Whoever can write to the bucket can also add, replace
or copy objects, so a commit object counts as a version only once it verifies and names the
version it is found under, and versions are ordered only by what they sign.
"""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from offline_bundle import openpgp
from offline_bundle.core.config import Source
from offline_bundle.core.log import Log
from offline_bundle.core.manifest import BLOBS_FOLDER, Manifest, Payload, check_payload_key, parse_manifest
from offline_bundle.core.names import is_valid_name
from offline_bundle.core.versions import Committed, nearest, order, select_for_check, semver_key
from offline_bundle.errors import BundleError, ConfigError, NotCommittedError, StoreError, VerificationError
from offline_bundle.storage.base import COMMIT_MAX_BYTES, Store

COMMIT_NAME = "manifest.json.asc"
GET_THREADS = 8  # commit objects fetched at once: small GETs, where latency dominates
# Commit objects verified in the first step down from the newest; each further step is STEP_GROWTH
# times larger, so that junk piled on top of the newest names costs few rounds (each a GET round and a
# gpg run), while a clean bucket costs one small round.
FIRST_STEP = 8
STEP_GROWTH = 4
SKIPPED_SHOWN = 3


def commit_key(source: Source, version: str) -> str:
    return source.key(version, COMMIT_NAME)


def blobs_prefix(source: Source) -> str:
    return source.key("_blobs", "")


def new_payload_key() -> str:
    """A fresh ``_blobs/<id>``: 128 random bits, so the key is known before the first byte is sent."""
    return BLOBS_FOLDER + secrets.token_hex(16)


def payload_object_key(source: Source, payload: Payload) -> str:
    """Where ``payload`` lives in ``source``'s store: the manifest's key is relative to the bundle's folder.

    Every reader and writer of payload objects goes through here, and the key is checked again, so a
    payload can only ever be read from or written to this bundle's own ``_blobs/``, whatever the
    bucket or prefix the bundle was carried into.
    """
    return source.key("") + check_payload_key(payload.key)


def write_commit(store: Store, key: str, body: bytes, *, only_if_absent: bool) -> None:
    """Write a commit object. Nothing is kept beside it: order comes from what is signed inside."""
    store.put_bytes(key, body, only_if_absent=only_if_absent)


def trusted_keys(source: Source) -> list[str]:
    """Trusted keys, plus the public half of our own signing key (the put's implicit get)."""
    keys = list(source.trusted_public_keys)
    if source.signing_private_key:
        keys.append(openpgp.public_key_of(source.signing_private_key, source.signing_private_key_passphrase))
    return keys


@dataclass(frozen=True)
class Trusted:
    """A verified commit object: its manifest, the manifest's text as verified, the object's bytes, the signer.

    ``without_texts`` drops the two texts where they were written out already: a get of 100,000 files
    would hold 33 MB of them while its parts come.
    """

    manifest: Manifest
    manifest_bytes: bytes
    commit_bytes: bytes
    signer: str | None
    signer_expired: bool

    def without_texts(self) -> Trusted:
        return replace(self, manifest_bytes=b"", commit_bytes=b"")


def read_commit(source: Source, store: Store, version: str, *, keys: list[str] | None = None) -> Trusted:
    """Fetch and verify a commit object; the manifest must name this bundle and this version.

    Verification comes before anything of the manifest is believed, and before any payload is
    fetched. Naming itself defeats replay: an older commit object copied under a newer version's
    key names the older version and is refused.
    """
    key = commit_key(source, version)
    data = store.get_bytes(key)
    if data is None:
        raise NotCommittedError(_not_committed(source, store, version))
    return trust_commit(source, data, version, keys=keys)


def _not_committed(source: Source, store: Store, version: str) -> str:
    """Name the nearest committed versions: a typo or a version not yet carried over is then plain."""
    where = f"{store.description} under {source.key('')}"
    try:
        committed = listed_versions(source, store)[0]
    except StoreError:
        committed = []
    missing = f"version {version} of bundle {source.name} is not committed in {where}"
    if not committed:
        return f"{missing}; no version is (check name and prefix)"
    return f"{missing}; nearest: {', '.join(nearest(committed, version))}"


def trust_commit(
    source: Source,
    data: bytes,
    version: str,
    *,
    keys: list[str] | None = None,
    verified: openpgp.Verified | None = None,
) -> Trusted:
    """Trust a commit object's bytes; ``verified`` is gpg's verdict when it was already reached in a batch."""
    signer: str | None = None
    expired = False
    manifest_bytes: bytes | memoryview
    if data.lstrip().startswith(openpgp.SIGNED_HEADER):
        if verified is None:
            verified = openpgp.verify_clearsigned(data, keys if keys is not None else trusted_keys(source))
        signer, expired = verified.fingerprint, verified.key_expired
        # Parsed where the commit object holds the verified text as it stands, and gpg's copy let go
        # meanwhile: with the text besides, parsing 100,000 files held three copies of 17 MB, not two.
        manifest_bytes = openpgp.in_place(data, verified.data)
        del verified
    elif data.lstrip().startswith(b"-----BEGIN PGP"):
        raise VerificationError("the commit object is an OpenPGP message of an unknown kind; refused")
    else:
        if not source.allow_unsigned:
            raise VerificationError(
                f"version {version} of bundle {source.name} is unsigned; refused (allow_unsigned: true accepts it)"
            )
        manifest_bytes = data.rstrip(b"\r\n")
    manifest = parse_manifest(manifest_bytes)
    if manifest.name != source.name or manifest.version != version:
        raise VerificationError(
            f"the commit object at version {version} of bundle {source.name} describes "
            f"{manifest.name} {manifest.version}: a replayed or misplaced commit object; refused"
        )
    return Trusted(manifest, bytes(manifest_bytes), data, signer, expired)


# ------------------------------------------------------------------------------ verified versions


class _Verifier:
    """Commit objects fetched and verified on demand, each at most once; the verdicts are kept."""

    def __init__(self, source: Source, store: Store, keys: list[str] | None) -> None:
        self.source = source
        self.store = store
        self._keys = keys
        self._gpg: openpgp.ClearsignVerifier | None = None
        self.trusted: dict[str, Trusted] = {}
        self.refused: dict[str, VerificationError] = {}

    def __enter__(self) -> _Verifier:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._gpg is not None:
            self._gpg.__exit__(*exc)

    def gpg(self) -> openpgp.ClearsignVerifier:
        if self._gpg is None:
            keys = self._keys if self._keys is not None else trusted_keys(self.source)
            self._gpg = openpgp.ClearsignVerifier(keys)
        return self._gpg

    def ok(self, version: str) -> bool:
        return version in self.trusted

    def verify(self, versions: list[str]) -> None:
        todo = [v for v in versions if v not in self.trusted and v not in self.refused]
        if not todo:
            return
        with ThreadPoolExecutor(min(GET_THREADS, len(todo))) as pool:
            bodies = list(pool.map(lambda v: self.store.get_bytes(commit_key(self.source, v)), todo))
        signed = [i for i, b in enumerate(bodies) if b is not None and b.lstrip().startswith(openpgp.SIGNED_HEADER)]
        verdicts: dict[int, openpgp.Verified | VerificationError] = {}
        if signed:
            many = self.gpg().verify([bodies[i] or b"" for i in signed])
            verdicts = dict(zip(signed, many, strict=True))
        for i, version in enumerate(todo):
            body = bodies[i]
            verdict = verdicts.get(i)
            if body is None:
                self.refused[version] = VerificationError("deleted while being listed")
            elif isinstance(verdict, VerificationError):
                self.refused[version] = verdict
            else:
                try:
                    self.trusted[version] = trust_commit(self.source, body, version, keys=[], verified=verdict)
                except VerificationError as e:
                    self.refused[version] = e


def listed_versions(source: Source, store: Store) -> tuple[list[str], dict[str, str]]:
    """Names found in one listing that may be versions, and objects refused from the listing alone."""
    base = source.key("")
    names: list[str] = []
    refused: dict[str, str] = {}
    for obj in store.list(base):
        rest = obj.key[len(base) :]
        version, _, leaf = rest.partition("/")
        if leaf != COMMIT_NAME:
            continue
        if not is_valid_name(version):
            refused[version] = "not a valid version name"
        elif obj.size > COMMIT_MAX_BYTES:
            refused[version] = f"larger than {COMMIT_MAX_BYTES} bytes"
        else:
            names.append(version)
    return names, refused


@dataclass(frozen=True)
class Listing:
    versions: list[Trusted]  # verified, oldest first, as selected
    skipped: dict[str, str]  # refused commit objects (among those examined): version -> why


def verified_listing(
    source: Source,
    store: Store,
    log: Log,
    *,
    current: str | None = None,
    newest: int | None = None,
    keys: list[str] | None = None,
    untrusted_is_error: bool = False,
) -> Listing:
    """Verified versions in ``version_order``, oldest first: ``current`` and all after it when it is
    a verified version, else the ``newest`` N (all when None).

    Only commit objects that verify against the trusted keys and name the version they are found
    under count, and the order comes from what they sign: the version string (SemVer) or the
    signed ``created_at``. Object times, object metadata and junk objects cannot move it. What is
    verified is only what the answer needs: under SemVer, candidates are sorted by name and verified
    from the newest down until the answer is complete; a name that does not parse is verified (it
    may turn ``auto`` into ``created``, which needs every version). Refused objects are reported in
    one warning line. ``untrusted_is_error``: when nothing verifies but a key signed something, fail
    naming that key and the trusted ones (the likeliest cause is a wrong trusted key).
    """
    names, listing_refused = listed_versions(source, store)
    with _Verifier(source, store, keys) as v:
        return _select(source, log, names, listing_refused, v, current, newest, untrusted_is_error)


def _select(
    source: Source,
    log: Log,
    names: list[str],
    listing_refused: dict[str, str],
    v: _Verifier,
    current: str | None,
    newest: int | None,
    untrusted_is_error: bool,
) -> Listing:
    how = source.version_order
    if how != "created":
        unparsed = [n for n in names if semver_key(n) is None]
        v.verify(unparsed)
        odd = sorted(n for n in unparsed if v.ok(n))
        if odd and how == "semver":
            raise ConfigError(
                f"version_order is semver but version {odd[0]} of bundle {source.name} is not SemVer "
                "(version_order: created orders by the signed creation time)"
            )
        if odd:
            how = "created"
        else:
            _verify_from_newest(v, sorted((n for n in names if n not in unparsed), key=_semver_order), current, newest)
    if how == "created":
        v.verify(names)
    _warn_skipped(source, log, listing_refused, v.refused)
    if untrusted_is_error and not v.trusted:
        untrusted = [e for e in v.refused.values() if isinstance(e, openpgp.UntrustedSigner)]
        if untrusted:
            raise untrusted[0]  # nothing verifies and a key signed something: most likely the wrong trusted key
    ordered = order([Committed(t.manifest.version, t.manifest.created_at) for t in v.trusted.values()], how)
    if current is not None and v.ok(current):
        picked = select_for_check(ordered, current)
    elif newest is not None:
        picked = ordered[-newest:]
    else:
        picked = ordered
    refused = {**listing_refused, **{k: str(e) for k, e in v.refused.items()}}
    return Listing([v.trusted[c.version] for c in picked], dict(sorted(refused.items())))


def latest_version(source: Source, store: Store, log: Log) -> str:
    """The newest verified version: what a command given no version works on."""
    found = verified_listing(source, store, log, newest=1, untrusted_is_error=True).versions
    if not found:
        raise BundleError(f"bundle {source.name} has no committed version in {store.description}")
    return found[-1].manifest.version


def _semver_order(name: str) -> tuple[object, str]:
    return (semver_key(name), name)


def _verify_from_newest(v: _Verifier, parsed: list[str], current: str | None, newest: int | None) -> None:
    """Verify ``parsed`` (SemVer order) from the newest down until the answer is known."""
    hi = len(parsed)  # everything from here up is verified
    if current is not None and current in parsed:
        hi = parsed.index(current)
        v.verify(parsed[hi:])
        if v.ok(current):
            return
    if newest is None:
        v.verify(parsed[:hi])
        return
    step = FIRST_STEP
    while hi > 0 and sum(1 for n in parsed[hi:] if v.ok(n)) < newest:
        lo = max(0, hi - max(step, newest))
        v.verify(parsed[lo:hi])
        hi, step = lo, step * STEP_GROWTH


def _warn_skipped(source: Source, log: Log, listing: dict[str, str], refused: dict[str, VerificationError]) -> None:
    reasons = list(listing.items()) + [(k, str(e)) for k, e in refused.items()]
    if not reasons:
        return
    reasons.sort()
    shown = "; ".join(f"{k}/{COMMIT_NAME} ({r})" for k, r in reasons[:SKIPPED_SHOWN])
    more = f"; and {len(reasons) - SKIPPED_SHOWN} more" if len(reasons) > SKIPPED_SHOWN else ""
    log(
        f"warning: skipped {len(reasons)} object(s) that are not verified commits of bundle {source.name}: "
        f"{shown}{more}"
    )
