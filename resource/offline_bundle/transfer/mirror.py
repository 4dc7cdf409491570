"""``mirror``: committed versions copied store to store, for automated cross-domain links.

Each version's commit object is verified with the far side's trusted keys (what its gets will
demand) before anything of that version is written there. A payload B already holds is skipped
only when its bytes hash to the signed manifest's SHA-256 (read back from B: a same-size object
planted by anyone who may write to B is replaced). The others are read from A twice: the first
read must match the signed manifest's SHA-256 before a byte is sent to B, the second is sent
part by part, each block checked against the first read (``verified_upload``): A's writers cannot
get a byte into B that the signer did not sign. The commit object goes last. A version that fails
is reported and the others go on: one bad version must not hold back the rest, and the exit
status still says something failed.

Memory holds one multipart part (``choose_part_size``: 8 MiB up to ~70 GiB payloads); nothing is
written to local disk. An interrupted payload resumes from the parts already in B (each checked
against the first read from A); a version's commit object is never written before its payloads.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import BinaryIO

from offline_bundle.bundle.approvals import carry_approvals, has_approval_objects
from offline_bundle.bundle.commit import (
    commit_key,
    payload_object_key,
    trust_commit,
    trusted_keys,
    verified_listing,
    write_commit,
)
from offline_bundle.bundle.records import write_record
from offline_bundle.core.config import Source
from offline_bundle.core.log import Log
from offline_bundle.core.manifest import Manifest, Payload
from offline_bundle.errors import AlreadyExistsError, BundleError, ConfigError, StoreError
from offline_bundle.storage.base import Store, choose_part_size
from offline_bundle.transfer.media import unique_payloads
from offline_bundle.transfer.verified_upload import PieceSource, holds_payload, upload_verified


@dataclass(frozen=True)
class MirrorResult:
    copied: tuple[str, ...]
    present: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]  # (version, reason)
    payloads_copied: int
    payloads_present: int


class Mirror:
    def __init__(
        self,
        src: Source,
        src_store: Store,
        dst: Source,
        dst_store: Store,
        log: Log,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if src.name != dst.name:
            raise ConfigError("--from-config and --to-config must name the same bundle: the signed manifest names it")
        if (src.endpoint, src.bucket, src.prefix) == (dst.endpoint, dst.bucket, dst.prefix):
            raise ConfigError("--from-config and --to-config point at the same bundle folder")
        self.src, self.src_store, self.dst, self.dst_store = src, src_store, dst, dst_store
        self.log = log
        self.env = env
        # The far side's trust decides what lands there; its own config may only sign (a put side).
        self.keys = trusted_keys(dst) or trusted_keys(src)
        if not self.keys and not dst.allow_unsigned:
            raise ConfigError("mirror verifies every version before writing it: set trusted_public_keys in --to-config")

    def run(self, *, keep: int | None = None, version: str | None = None) -> MirrorResult:
        if keep is not None and keep < 1:
            raise ConfigError("--keep must be at least 1")
        listing = verified_listing(self.src, self.src_store, self.log, keys=self.keys, untrusted_is_error=True)
        ordered = [t.manifest.version for t in listing.versions]
        if version is not None:
            if version not in ordered:
                raise BundleError(f"version {version} is not committed in {self.src_store.description}")
            ordered = [version]
        elif keep is not None:
            ordered = ordered[-keep:]
        if not ordered:
            raise BundleError(f"bundle {self.src.name} has no committed version in {self.src_store.description}")

        copied: list[str] = []
        present: list[str] = []
        # A commit object that does not verify is never copied; a full mirror reports it as failed.
        failed: list[tuple[str, str]] = list(listing.skipped.items()) if keep is None and version is None else []
        counts = [0, 0]
        for v in ordered:
            try:
                outcome = self._mirror_version(v, counts)
            except BundleError as e:
                failed.append((v, str(e)))
                self.log(f"error: version {v}: {e}")
                continue
            (copied if outcome else present).append(v)
        self.log(
            f"mirror {self.src.name}: {len(copied)} version(s) copied, {len(present)} already there, "
            f"{len(failed)} failed; {counts[0]} payload(s) copied, {counts[1]} already there"
        )
        return MirrorResult(tuple(copied), tuple(present), tuple(failed), counts[0], counts[1])

    def _mirror_version(self, version: str, counts: list[int]) -> bool:
        """True if copied, False if the far side already had it."""
        key = commit_key(self.dst, version)  # where it goes: the far side's prefix
        data = self.src_store.get_bytes(commit_key(self.src, version))
        if data is None:
            raise BundleError(f"the commit object disappeared from {self.src_store.description}")
        existing = self.dst_store.get_bytes(key)
        if existing == data:
            self.log(f"version {version} is already in {self.dst_store.description}: skipped")
            if has_approval_objects(self.src, self.src_store, version):  # approvals may arrive after the version
                trusted = trust_commit(self.dst, data, version, keys=self.keys)
                carry_approvals(self.src, self.src_store, self.dst_store, trusted, self.log, dst_source=self.dst)
            return False
        if existing is not None:
            raise BundleError(f"{self.dst_store.description} holds another commit object for it; not replaced")
        trusted = trust_commit(self.dst, data, version, keys=self.keys)
        signer = trusted.signer or "UNSIGNED (allow_unsigned)"
        self.log(f"verified {self.src.name} {version}: signed by {signer}")
        copied, present = self._copy_payloads(trusted.manifest)
        counts[0] += len(copied)
        counts[1] += len(present)
        try:
            write_commit(self.dst_store, key, data, only_if_absent=True)
        except AlreadyExistsError:
            if self.dst_store.get_bytes(key) != data:
                raise
        carry_approvals(self.src, self.src_store, self.dst_store, trusted, self.log, dst_source=self.dst)
        self.log(f"mirrored {self.src.name} {version}: {len(copied)} payload(s) copied, {len(present)} already there")
        write_record(
            self.dst_store,
            self.dst,
            "mirror",
            trusted.manifest,
            signer=trusted.signer,
            log=self.log,
            details={"from": self.src_store.description, "copied": copied, "present": present},
            env=self.env,
        )
        return True

    def _copy_payloads(self, manifest: Manifest) -> tuple[list[str], list[str]]:
        """(payload keys copied, payload keys the far side already held, checked by their SHA-256)."""
        copied: list[str] = []
        present: list[str] = []
        for payload, parts in unique_payloads(manifest):
            label = f"payload {payload.sha256[:12]}… (part {', '.join(parts)})"
            target = payload_object_key(self.dst, payload)
            if holds_payload(self.dst_store, target, payload.size, payload.sha256, self.log, label=label):
                present.append(payload.key)
                continue
            outcome = upload_verified(
                self.dst_store, target, payload.size, payload.sha256, self._ranges(payload), self.log, label=label
            )
            self.log(f"{label}: copied ({outcome.uploaded} part(s) sent, {outcome.resumed} resumed), SHA-256 verified")
            copied.append(payload.key)
        return copied, present

    def _ranges(self, payload: Payload) -> list[PieceSource]:
        part = choose_part_size(payload.size)
        key = payload_object_key(self.src, payload)

        def opener(start: int, end: int) -> Callable[[], BinaryIO]:
            def read_range() -> BinaryIO:
                buf = io.BytesIO()  # one multipart part in memory: botocore needs a body it can rewind
                reader = self.src_store.open_range(key, payload.size, start, end)
                try:
                    while buf.tell() < end - start:
                        data = reader.read(end - start - buf.tell())
                        if not data:
                            raise StoreError(f"{key} ended at byte {start + buf.tell()} of {payload.size}")
                        buf.write(data)
                finally:
                    reader.close()
                buf.seek(0)
                return buf

            return read_range

        return [
            PieceSource(n, min(part, payload.size - off), None, f"part {n}", opener(off, min(payload.size, off + part)))
            for n, off in enumerate(range(0, payload.size, part), 1)
        ]
