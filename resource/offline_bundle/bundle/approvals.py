"""The two-person rule: a version crosses only when people other than CI have approved its exact manifest.

Whoever holds the signing key (a CI secret) could otherwise decide alone what runs on the air-gapped
side. An approval is a small clear-signed statement by an approver key, stored next to the commit
object at ``<prefix><name>/<version>/approvals/<approver fingerprint>.asc``; it binds the bundle's
name, the version and the SHA-256 of the exact signed manifest bytes, so it cannot be replayed onto
another version or another content. Readers never trust an approval object's name or place: each
one is verified against ``approver_public_keys`` and counted once per distinct key, and the bundle's
own signing key never counts (CI cannot approve what it signed, even when it is also listed as an
approver). Objects that do not count are ignored with one warning line each, never fatal: anyone
who can write to the bucket can add junk, and junk must not be able to block a real approval.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from offline_bundle import openpgp
from offline_bundle.bundle.commit import Trusted, read_commit
from offline_bundle.core.config import SECRET_KEY_HEADER, Source
from offline_bundle.core.log import Log
from offline_bundle.core.manifest import distinct_keys
from offline_bundle.core.versions import Committed
from offline_bundle.errors import BundleError, ConfigError, CryptoError, VerificationError
from offline_bundle.storage.base import Store

APPROVALS_DIR = "approvals"
APPROVAL_KIND = "offline-bundle-approval"
APPROVAL_FORMAT = 1
APPROVAL_SUFFIX = ".asc"
APPROVAL_MAX_BYTES = 64 << 10
# Objects read per version: junk written by anyone with bucket access must not make check unbounded.
MAX_APPROVAL_OBJECTS = 64
COMMENT_MAX = 500
_FINGERPRINT_LENGTHS = (40, 64)  # OpenPGP v4 and v5/v6 fingerprints in hex


class ApprovalRejected(VerificationError):
    """One approval object does not count; the message says why (it becomes a warning line)."""


class NotApproved(VerificationError):
    """A version lacks the approvals ``required_approvals`` asks for."""


def approvals_prefix(source: Source, version: str) -> str:
    return source.key(version, APPROVALS_DIR, "")


def approval_key(source: Source, version: str, fingerprint: str) -> str:
    return approvals_prefix(source, version) + fingerprint + APPROVAL_SUFFIX


def is_approval_leaf(leaf: str) -> bool:
    """An approval object's own name: ``<fingerprint>.asc`` (upper-case hex), nothing else."""
    stem = leaf[: -len(APPROVAL_SUFFIX)] if leaf.endswith(APPROVAL_SUFFIX) else ""
    return len(stem) in _FINGERPRINT_LENGTHS and all(c in "0123456789ABCDEF" for c in stem)


def manifest_sha256(trusted: Trusted) -> str:
    return hashlib.sha256(trusted.manifest_bytes).hexdigest()


def short(fingerprint: str) -> str:
    """The long key id a person compares with ``gpg --list-keys``; full fingerprints stay in metadata."""
    return fingerprint[-16:]


# ------------------------------------------------------------------------------------------ statement


@dataclass(frozen=True)
class Statement:
    name: str
    version: str
    manifest_sha256: str
    approved_at: str
    approver: str
    comment: str | None = None

    def to_json_bytes(self) -> bytes:
        doc: dict[str, Any] = {
            "kind": APPROVAL_KIND,
            "format": APPROVAL_FORMAT,
            "name": self.name,
            "version": self.version,
            "manifest_sha256": self.manifest_sha256,
            "approved_at": self.approved_at,
            "approver": self.approver,
        }
        if self.comment:
            doc["comment"] = self.comment
        return json.dumps(doc, separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode("ascii")


_distinct_keys = distinct_keys(lambda key: ApprovalRejected(f"its signed text gives the key {key!r} twice"))


def parse_statement(data: bytes) -> Statement:
    try:
        doc = json.loads(data.decode("utf-8"), object_pairs_hook=_distinct_keys)
    except (UnicodeDecodeError, ValueError, RecursionError):  # ValueError: also a number over 4,300 digits
        raise ApprovalRejected("its signed text is not JSON") from None
    if not isinstance(doc, dict) or doc.get("kind") != APPROVAL_KIND:
        raise ApprovalRejected(f"its signed text is not an {APPROVAL_KIND} statement")
    if type(doc.get("format")) is not type(APPROVAL_FORMAT) or doc.get("format") != APPROVAL_FORMAT:
        raise ApprovalRejected(
            f"approval format {doc.get('format')!r} is not known to this offline-bundle "
            f"(it reads format {APPROVAL_FORMAT}); upgrade this side"
        )
    fields = ("name", "version", "manifest_sha256", "approved_at", "approver")
    if not all(isinstance(doc.get(f), str) for f in fields):
        raise ApprovalRejected(f"the statement lacks one of {', '.join(fields)}")
    comment = doc.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise ApprovalRejected("the statement's comment is not text")
    return Statement(doc["name"], doc["version"], doc["manifest_sha256"], doc["approved_at"], doc["approver"], comment)


# ------------------------------------------------------------------------------------------- status


@dataclass(frozen=True)
class ApprovalStatus:
    name: str
    version: str
    required: int
    approvers: tuple[str, ...]  # distinct approver fingerprints whose approval counts, sorted
    ignored: tuple[tuple[str, str], ...] = ()  # (object key, why)

    @property
    def missing(self) -> int:
        return max(0, self.required - len(self.approvers))

    @property
    def satisfied(self) -> bool:
        return self.missing == 0

    def describe(self) -> str:
        by = f" (by {', '.join(short(f) for f in self.approvers)})" if self.approvers else ""
        return (
            f"version {self.version} of bundle {self.name} has {len(self.approvers)} of {self.required} "
            f"required approvals{by}; missing {self.missing}"
        )


def _objects(source: Source, store: Store, version: str, log: Log) -> list[str]:
    prefix = approvals_prefix(source, version)
    keys = sorted(obj.key for obj in store.list(prefix))
    if len(keys) > MAX_APPROVAL_OBJECTS:
        log(
            f"warning: {prefix} holds {len(keys)} objects; only the first {MAX_APPROVAL_OBJECTS} "
            "(by name) are read as approvals"
        )
        keys = keys[:MAX_APPROVAL_OBJECTS]
    return keys


def _read(store: Store, key: str) -> bytes:
    try:
        data = store.get_bytes(key, limit=APPROVAL_MAX_BYTES)
    except BundleError as e:
        raise ApprovalRejected(f"unreadable ({e})") from None
    if data is None:
        raise ApprovalRejected("it disappeared while being read")
    return data


_APPROVAL_FAULTS = {
    "bad": "its signature is BAD: the statement was altered after signing",
    "unchecked": "it is signed by a key that is not among approver_public_keys",
    "revoked": "it is signed by a REVOKED approver key",
    "expired": "its signature itself has expired",
    "none": "it does not carry exactly one valid signature",
    "not one": "it does not carry exactly one valid signature",
}


def _verify_one(gpg: Any, data: bytes, keys: dict[str, openpgp.KeyInfo]) -> tuple[bytes, str]:
    """Exactly one good signature by one of ``keys``; the signed text and the primary fingerprint."""
    if not data.lstrip().startswith(openpgp.SIGNED_HEADER) or data.count(openpgp.SIGNED_HEADER) != 1:
        raise ApprovalRejected("it is not one OpenPGP clear-signed message")
    result = gpg.decrypt(data, extra_args=openpgp.COMMON_ARGS)
    statuses = openpgp.parse_status(result.stderr)
    fault = openpgp.signature_fault(statuses)
    if fault is not None:
        raise ApprovalRejected(_APPROVAL_FAULTS[fault])
    primary = openpgp.valid_signature(statuses).args[9]
    if primary not in keys:
        raise ApprovalRejected(f"it is signed by {short(primary)}, which is not among approver_public_keys")
    if keys[primary].revoked:
        raise ApprovalRejected(f"it is signed by REVOKED approver key {short(primary)}")
    text = bytes(result.data)
    return text[:-2] if text.endswith(b"\r\n") else text[:-1] if text.endswith(b"\n") else text, primary


def check_statement(statement: Statement, signer: str, trusted: Trusted, source: Source) -> None:
    """The statement binds this bundle's exact manifest, and its signer is a second person."""
    m = trusted.manifest
    if (statement.name, statement.version) != (m.name, m.version):
        raise ApprovalRejected(
            f"it approves {statement.name} {statement.version}, not {m.name} {m.version}: "
            "a replayed or misplaced approval"
        )
    if statement.manifest_sha256 != manifest_sha256(trusted):
        raise ApprovalRejected(
            "it binds other manifest bytes than this version's signed manifest "
            "(an approval of other content, or the version was overwritten since)"
        )
    if statement.approver != signer:
        raise ApprovalRejected(f"it names approver {short(statement.approver)} but is signed by {short(signer)}")
    if trusted.signer is not None and signer == trusted.signer:
        raise ApprovalRejected(
            f"it is signed by {short(signer)}, the key that signed the bundle: a bundle's signer cannot approve it"
        )


def evaluate(
    source: Source, trusted: Trusted, objects: Iterable[tuple[str, bytes]]
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Verify approval objects in one GnuPG home: {approver fingerprint: object key}, [(key, why ignored)].

    A key's second approval counts once; the object named after its key stands for it, else the
    first by name.
    """
    counted: dict[str, str] = {}
    ignored: list[tuple[str, str]] = []
    items = list(objects)
    if not items:
        return counted, ignored
    if not source.approver_public_keys:
        return counted, [(k, "no approver_public_keys are configured to verify it against") for k, _ in items]
    with openpgp.gpg_home() as gpg:
        infos = openpgp.import_public_keys(gpg, source.approver_public_keys, "source.approver_public_keys")
        keys = {k.fingerprint: k for k in infos}
        for key, data in items:
            try:
                text, signer = _verify_one(gpg, data, keys)
                check_statement(parse_statement(text), signer, trusted, source)
            except ApprovalRejected as e:
                ignored.append((key, str(e)))
                continue
            if signer in counted:
                own = f"/{signer}{APPROVAL_SUFFIX}"
                if key.endswith(own) and not counted[signer].endswith(own):
                    counted[signer], key = key, counted[signer]
                ignored.append((key, f"a second approval by {short(signer)}; counted once"))
            else:
                counted[signer] = key
    return counted, ignored


def count_approvals(source: Source, store: Store, trusted: Trusted, log: Log) -> ApprovalStatus:
    """The approvals of a verified version that count, each ignored object reported as one warning."""
    m = trusted.manifest
    status = ApprovalStatus(m.name, m.version, source.required_approvals, ())
    if not source.approver_public_keys:
        return status
    objects: list[tuple[str, bytes]] = []
    ignored: list[tuple[str, str]] = []
    for key in _objects(source, store, m.version, log):
        leaf = key[len(approvals_prefix(source, m.version)) :]
        if not is_approval_leaf(leaf):
            ignored.append((key, "its name is not <approver fingerprint>.asc"))
            continue
        try:
            objects.append((key, _read(store, key)))
        except ApprovalRejected as e:
            ignored.append((key, str(e)))
    counted, rejected = evaluate(source, trusted, objects)
    ignored += rejected
    for key, why in ignored:
        log(f"warning: approval object {key} ignored: {why}")
    return ApprovalStatus(m.name, m.version, source.required_approvals, tuple(sorted(counted)), tuple(ignored))


def require_approvals(source: Source, store: Store, trusted: Trusted, log: Log) -> ApprovalStatus:
    """Refuse a version without the approvals ``required_approvals`` asks for, naming who approved."""
    status = count_approvals(source, store, trusted, log)
    if not status.satisfied:
        raise NotApproved(status.describe())
    if status.approvers:
        log(f"approved by {', '.join(status.approvers)} ({len(status.approvers)} of {status.required} required)")
    return status


# ------------------------------------------------------------------------------------------- check


def approved_for_check(
    source: Source, store: Store, ordered: list[Committed], current: str | None, log: Log
) -> list[Committed]:
    """``select_for_check`` over the approved versions only, verifying no more than the answer needs.

    The given version (when still approved) and the approved ones after it; otherwise the latest
    approved one. A version that does not verify or lacks approvals is skipped with a warning.
    """

    def approved(c: Committed) -> bool:
        try:
            trusted = read_commit(source, store, c.version)
        except BundleError as e:
            log(f"warning: version {c.version} skipped: {e}")
            return False
        status = count_approvals(source, store, trusted, log)
        if not status.satisfied:
            log(f"note: {status.describe()}; not listed")
        return status.satisfied

    versions = [c.version for c in ordered]
    if current in versions:
        start = versions.index(current)
        if approved(ordered[start]):
            return [ordered[start], *(c for c in ordered[start + 1 :] if approved(c))]
    for c in reversed(ordered):
        if approved(c):
            return [c]
    return []


# ------------------------------------------------------------------------------------------ signing


@dataclass(frozen=True)
class ApproverKey:
    fingerprint: str
    secret_armored: str
    passphrase: str | None


def load_approver_key(path: str, passphrase: str | None) -> ApproverKey:
    """The approver's secret key from ``--key FILE``: one signing-capable, unrevoked, unexpired key."""
    try:
        with open(path, encoding="utf-8") as f:
            armored = f.read()
    except OSError as e:
        raise ConfigError(f"--key {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--key {path} is not an ASCII-armoured OpenPGP secret key") from None
    if SECRET_KEY_HEADER not in armored:
        raise ConfigError(f"--key {path} is not an ASCII-armoured OpenPGP secret key (no {SECRET_KEY_HEADER})")
    with openpgp.gpg_home() as gpg:
        info = openpgp.import_secret_key(gpg, armored, passphrase, f"--key {path}")
    if info.revoked or info.expired:
        raise ConfigError(f"--key {path}: key {info.fingerprint} is {'revoked' if info.revoked else 'expired'}")
    if "S" not in info.capabilities:
        raise ConfigError(f"--key {path}: key {info.fingerprint} cannot sign")
    return ApproverKey(info.fingerprint, armored, passphrase)


def sign_statement(statement: Statement, key: ApproverKey, what: str) -> bytes:
    data = statement.to_json_bytes()
    with openpgp.gpg_home() as gpg:
        openpgp.import_secret_key(gpg, key.secret_armored, key.passphrase, what)
        result = gpg.sign(
            data,
            keyid=key.fingerprint,
            passphrase=key.passphrase or None,
            clearsign=True,
            binary=True,
            extra_args=["--digest-algo", "SHA256"],
        )
        statuses = openpgp.parse_status(result.stderr)
    if not any(s.keyword == "SIG_CREATED" for s in statuses) or not result.data:
        codes = openpgp.error_codes(statuses)
        if openpgp.GPG_ERR_BAD_PASSPHRASE in codes:
            raise CryptoError(f"the passphrase is wrong for {what}")
        if openpgp.GPG_ERR_NO_PIN in codes or (key.passphrase is None and "passphrase" in result.stderr.lower()):
            raise CryptoError(f"{what} is protected: give its passphrase with --passphrase-file or --passphrase-env")
        raise CryptoError(f"signing the approval failed: {openpgp.human_errors(result.stderr)}")
    return bytes(result.data)


def make_statement(trusted: Trusted, approver: str, comment: str | None, now: datetime | None = None) -> Statement:
    if comment is not None:
        comment = comment.strip()
        if len(comment) > COMMENT_MAX:
            raise ConfigError(f"--comment is {len(comment)} characters long; at most {COMMENT_MAX}")
    at = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    m = trusted.manifest
    return Statement(m.name, m.version, manifest_sha256(trusted), at, approver, comment or None)


# ------------------------------------------------------------------------------------------ carrying


def has_approval_objects(source: Source, store: Store, version: str) -> bool:
    """One listing: whether a version has anything to carry (verifying its commit object costs more)."""
    return next(iter(store.list(approvals_prefix(source, version))), None) is not None


def carry_approvals(
    source: Source,
    src_store: Store,
    dst_store: Store,
    trusted: Trusted,
    log: Log,
    *,
    dst_source: Source | None = None,
) -> list[str]:
    """Copy a carried version's approval objects that ``dst_store`` lacks; the keys written.

    Approvals may arrive after their version, so export, import and mirror call this also for a
    version the far side already holds, and only these small objects move then. With approver keys
    configured on the receiving side (``dst_source``, else ``source``) an object is written only if
    it counts there; without, it is carried as it is: every reader verifies it anyway. The receiving
    side's ``prefix`` places it there (a mirror's two stores may use different ones).
    """
    judge = dst_source or source
    version = trusted.manifest.version
    candidates: list[tuple[str, bytes]] = []
    prefix = approvals_prefix(source, version)
    target = approvals_prefix(judge, version)
    for key in _objects(source, src_store, version, log):
        leaf = key[len(prefix) :]
        if not is_approval_leaf(leaf):
            log(f"warning: {key} is not an approval object (<approver fingerprint>.asc); not carried")
            continue
        try:
            data = _read(src_store, key)
        except ApprovalRejected as e:
            log(f"warning: approval object {key} not carried: {e}")
            continue
        if not data.lstrip().startswith(openpgp.SIGNED_HEADER):
            log(f"warning: approval object {key} not carried: it is not an OpenPGP clear-signed message")
            continue
        try:
            existing = dst_store.get_bytes(target + leaf, limit=APPROVAL_MAX_BYTES)
        except BundleError:
            existing = None  # unreadable or oversized there: replaced by the verified one
        if existing != data:
            candidates.append((target + leaf, data))
    if judge.approver_public_keys and candidates:
        counted, ignored = evaluate(judge, trusted, candidates)
        for key, why in ignored:
            log(f"warning: approval object {key} not carried: {why}")
        keep = set(counted.values())
        candidates = [(k, d) for k, d in candidates if k in keep]
    written = []
    for key, data in candidates:
        dst_store.put_bytes(key, data)
        written.append(key)
    if written:
        log(
            f"{len(written)} approval object(s) of {trusted.manifest.name} {version} carried to {dst_store.description}"
        )
    return written
