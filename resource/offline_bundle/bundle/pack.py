"""The put side: plan -> (reuse or stream tar -> hash -> encrypt -> upload) -> manifest -> sign -> commit.

No payload touches local disk: the tar is produced as gpg reads it, gpg's output is hashed and
uploaded part by part, and the commit object goes up last (its manifest is signed through files in
gpg's throwaway home, removed with it: see ``openpgp.clearsign``).
"""

from __future__ import annotations

import functools
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime

from offline_bundle import openpgp
from offline_bundle.bundle.archive import CHUNK, PartPlan, TarStream, hash_entries, plan_part, probe_of
from offline_bundle.bundle.commit import (
    Trusted,
    commit_key,
    new_payload_key,
    payload_object_key,
    read_commit,
    trusted_keys,
    verified_listing,
    write_commit,
)
from offline_bundle.bundle.parallel import PartGroup, PartsStopped, Ticket, default_parallel_parts
from offline_bundle.core.config import BuildInfo, OutParams, Source
from offline_bundle.core.confined import BuildDir
from offline_bundle.core.log import Log
from offline_bundle.core.manifest import BLOBS_FOLDER, PROBE_BYTES, Encryption, FileEntry, Manifest, Part, Payload
from offline_bundle.core.names import MAX_NAME_LENGTH, is_valid_name
from offline_bundle.core.progress import Progress
from offline_bundle.errors import AlreadyExistsError, BundleError, ConfigError, VerificationError
from offline_bundle.storage.base import COMMIT_MAX_BYTES, MiB, Store, choose_part_size

REUSE_LOOKBACK = 50  # commit objects read when looking for a payload to reuse


@dataclass(frozen=True)
class PutResult:
    manifest: Manifest
    signer: str | None
    uploaded: tuple[str, ...]
    reused: tuple[str, ...]
    unchanged: bool


VERSION_FILE_MAX_BYTES = 4096  # a version is at most 200 characters; more is not a version file


def resolve_version(params: OutParams, build_dir: str) -> str:
    if params.version is not None:
        return params.version
    if params.version_file is not None:
        return _version_from_file(params.version_file, build_dir)
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _version_from_file(name: str, build_dir: str) -> str:
    """The version held by ``name`` below the build folder, read without following a link.

    The file may be anything an earlier step left (a token by mistake): its content is never
    put into a message, and it is never read from outside the build folder.
    """
    what = f"params.version_file {name!r}"
    if os.path.isabs(name) or ".." in name.split("/") or "\x00" in name:
        raise ConfigError(f"{what} must be a path inside the build folder, relative and without '..'")
    with BuildDir(build_dir) as root:
        st = root.lstat(name, what)
        if st is None:
            raise ConfigError(f"{what} does not exist in the build folder")
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{what} is not a regular file (a symlink is not followed); name the file itself")
        with root.open_file(name, what, same_as=(st.st_dev, st.st_ino)) as f:
            data = f.read(VERSION_FILE_MAX_BYTES + 1)
    if len(data) > VERSION_FILE_MAX_BYTES:
        raise ConfigError(f"{what} is larger than {VERSION_FILE_MAX_BYTES} bytes; it should hold only the version")
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{what} is not UTF-8 text; it should hold only the version") from None
    if not is_valid_name(text):
        raise ConfigError(
            f"{what} does not hold a valid version (content not shown): a version matches "
            f"[A-Za-z0-9][A-Za-z0-9._+-]*, contains no '..' and has at most {MAX_NAME_LENGTH} characters"
        )
    return text


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _shape(
    plan_files: list[tuple[str, str, int, int, str | None]],
) -> tuple[tuple[str, str, int, int, str | None], ...]:
    return tuple(sorted(plan_files))


def _plan_shape(plan: PartPlan) -> tuple:
    return _shape([(e.path, e.type, e.mode, e.size, e.target) for e in plan.entries])


def _part_shape(part: Part) -> tuple:
    return _shape([(f.path, f.type, f.mode, f.size, f.target) for f in part.files])


def _same_files(plan: PartPlan, part: Part) -> bool:
    """Same paths, types, modes and bytes; hashes the local files (once per plan) only when the shape matches."""
    if _plan_shape(plan) != _part_shape(part):
        return False
    sources = {e.path: e for e in plan.entries}
    for f in part.files:  # a few KiB per file tell most changes apart before any file is read whole
        if f.probe is not None:
            if f.path not in plan.probes:
                plan.probes[f.path] = probe_of(sources[f.path])
            if plan.probes[f.path] != f.probe:
                return False
    if plan.hashes is None:
        plan.hashes = {e.path: e.sha256 for e in hash_entries(plan.entries) if e.sha256}
    return all(f.type != "file" or plan.hashes.get(f.path) == f.sha256 for f in part.files)


SIGNATURE_ALLOWANCE = 64 * 1024  # the clear-signing header and the armoured signature, with room to spare
_PLACEHOLDER_SHA = "f" * 64


def manifest_size_bound(
    plans: list[PartPlan], encryption: Encryption, source: Source, version: str, build: BuildInfo
) -> tuple[int, int]:
    """(an upper bound of the manifest's size in bytes, its file entries), from the plan alone.

    Every path, mode and link target is known before anything is read; the hashes, probes,
    payload sizes and keys are counted at their longest. Raises, as the real manifest would, when
    a line is too long to clear-sign.
    """
    parts = tuple(
        Part(
            plan.name,
            plan.destination,
            Payload(BLOBS_FOLDER + _PLACEHOLDER_SHA, 10**18, _PLACEHOLDER_SHA),
            encryption,
            tuple(
                FileEntry(
                    e.path,
                    e.type,
                    e.mode,
                    e.mtime,
                    e.size,
                    _PLACEHOLDER_SHA if e.type == "file" else None,
                    e.target,
                    _PLACEHOLDER_SHA if e.type == "file" and e.size > PROBE_BYTES else None,
                )
                for e in plan.entries
            ),
        )
        for plan in plans
    )
    manifest = Manifest(name=source.name, version=version, created_at=_now(), parts=parts, created_by=build.values)
    return manifest.encoded_size(), manifest.file_count


def check_commit_fits(
    plans: list[PartPlan], encryption: Encryption, source: Source, version: str, build: BuildInfo
) -> None:
    """Refuse, before anything is uploaded, a bundle whose commit object no get could read.

    The commit object is the manifest plus a signature; a get reads it whole and refuses one over
    COMMIT_MAX_BYTES, so a put that committed it would publish a version nobody can fetch.
    """
    manifest_bytes, files = manifest_size_bound(plans, encryption, source, version, build)
    size = manifest_bytes + SIGNATURE_ALLOWANCE
    if size > COMMIT_MAX_BYTES:
        raise ConfigError(
            f"the bundle lists {files} files and folders: its signed manifest would be about {size / MiB:.0f} MiB, "
            f"more than the {COMMIT_MAX_BYTES // MiB} MiB a get reads; pack fewer files (e.g. tar many small files "
            "into one archive and pack that), or shorter paths"
        )


def _estimate(plan: PartPlan) -> int:
    """The payload's size as the multipart part size is chosen from it: the tar and OpenPGP framing."""
    return plan.estimated_tar_size() + 64 * 1024


class Packer:
    def __init__(self, source: Source, store: Store, log: Log, *, parallel: int | None = None) -> None:
        self.source = source
        self.store = store
        self.log = log
        self.parallel = parallel or default_parallel_parts()  # parts uploaded side by side, at most

    def put(self, params: OutParams, build_dir: str, build: BuildInfo) -> PutResult:
        source = self.source
        version = resolve_version(params, build_dir)
        if not source.encrypts and not source.allow_unencrypted:
            raise ConfigError(
                "source has neither recipient_public_keys nor encryption_passphrase; "
                "set allow_unencrypted: true to make signed, unencrypted bundles"
            )
        plans = [plan_part(build_dir, p.name, p.path, p.destination) for p in params.parts]
        encryption = self._encryption()
        check_commit_fits(plans, encryption, source, version, build)
        keys = trusted_keys(source)
        self._probe_signing_key()

        existing = self.store.get_bytes(commit_key(source, version))
        if existing is not None:
            unchanged = self._check_existing(version, plans, keys, params.overwrite)
            if unchanged is not None:
                return unchanged

        done, todo = self._reuse_all(plans, keys, encryption)
        reused = list(done)
        created: list[str] = []  # payload objects of this put: removed again if it fails
        try:
            done.update(zip([p.name for p in todo], self._upload_all(todo, encryption, created), strict=True))
        except BaseException:
            self._remove(created)
            raise
        parts = [done[plan.name] for plan in plans]
        uploaded = [plan.name for plan in todo]
        # Not removed if the commit fails: a write that timed out may still have committed them.
        return self._commit(build, version, existing is not None, parts, uploaded, reused)

    def _encryption(self) -> Encryption:
        source = self.source
        recipients = (
            openpgp.recipient_fingerprints(source.recipient_public_keys) if source.recipient_public_keys else []
        )
        return Encryption(
            recipients=tuple(recipients),
            passphrase=source.encryption_passphrase is not None,
            compression=source.compression,
        )

    def _probe_signing_key(self) -> None:
        """Prove the key and its passphrase sign before gigabytes move, not after."""
        source = self.source
        if source.signing_private_key:
            openpgp.clearsign(
                b"offline-bundle signing probe", source.signing_private_key, source.signing_private_key_passphrase
            )
        else:
            self.log("warning: no signing_private_key: the bundle will be unsigned and gets will refuse it by default")

    def _check_existing(
        self, version: str, plans: list[PartPlan], keys: list[str], overwrite: bool
    ) -> PutResult | None:
        """The result of a put that has nothing to do (the version holds the same content), else None.

        Raises when the version holds other content (or does not verify) and ``overwrite`` is off.
        """
        source = self.source
        try:
            current = read_commit(source, self.store, version, keys=keys)
        except VerificationError as e:
            if not overwrite:
                raise BundleError(
                    f"version {version} is already committed but its commit object does not verify ({e}); "
                    "use overwrite: true to replace it"
                ) from None
            current = None
        if current is not None and self._same_content(plans, current):
            self.log(f"version {version} is already committed with the same content: nothing uploaded")
            return PutResult(current.manifest, current.signer, (), (), unchanged=True)
        if not overwrite:
            raise BundleError(
                f"version {version} of bundle {source.name} is already committed with other content; "
                "choose a new version, or set overwrite: true to replace it"
            )
        self.log(f"version {version} exists with other content: overwriting its commit object")
        return None

    def _reuse_all(
        self, plans: list[PartPlan], keys: list[str], encryption: Encryption
    ) -> tuple[dict[str, Part], list[PartPlan]]:
        """(parts whose payload a committed version already holds, by name; the plans left to upload)."""
        candidates = self._reuse_candidates(keys, encryption)
        done: dict[str, Part] = {}
        todo: list[PartPlan] = []
        for plan in plans:
            part = self._reuse(plan, candidates, encryption)
            if part is None:
                todo.append(plan)
                continue
            done[plan.name] = part
            self.log(f"part {plan.name}: unchanged since a committed version, payload reused ({part.payload.key})")
        return done, todo

    def _commit(
        self,
        build: BuildInfo,
        version: str,
        existed: bool,
        parts: list[Part],
        uploaded: list[str],
        reused: list[str],
    ) -> PutResult:
        source = self.source
        manifest = Manifest(
            name=source.name,
            version=version,
            created_at=_now(),
            parts=tuple(parts),
            created_by=build.values or None,
        )
        signer = None
        if source.signing_private_key:  # signed from its pieces: the unsigned text is never held whole
            body, signer = openpgp.clearsign(
                manifest.json_pieces(), source.signing_private_key, source.signing_private_key_passphrase
            )
        else:
            body = manifest.to_json_bytes()
        try:
            write_commit(self.store, commit_key(source, version), body, only_if_absent=not existed)
        except AlreadyExistsError:
            raise BundleError(f"version {version} was committed by someone else while this put ran") from None
        self.log(f"committed {source.name} {version}: {len(uploaded)} part(s) uploaded, {len(reused)} reused")
        return PutResult(manifest, signer, tuple(uploaded), tuple(reused), unchanged=False)

    def _remove(self, keys: list[str]) -> None:
        """Delete the payload objects a failed put wrote: their ids are fresh, so no version references them.

        Best effort: what a dead store keeps, ``prune`` removes once it is older than its grace period.
        """
        for key in keys:
            try:
                self.store.delete(key)
            except BundleError:
                self.log(f"warning: could not remove {key} after the failure; prune removes it later")

    def _same_content(self, plans: list[PartPlan], current: Trusted) -> bool:
        parts = {p.name: p for p in current.manifest.parts}
        if set(parts) != {p.name for p in plans}:
            return False
        return all(parts[p.name].destination == p.destination and _same_files(p, parts[p.name]) for p in plans)

    def _reuse_candidates(self, keys: list[str], encryption: Encryption) -> list[Part]:
        """Parts of recent committed versions sealed the same way (a passphrase cannot be compared)."""
        if encryption.passphrase:
            return []
        # Only verified commit objects count: one we cannot trust is never a source of payloads.
        committed = verified_listing(self.source, self.store, self.log, newest=REUSE_LOOKBACK, keys=keys).versions
        out: list[Part] = []
        for trusted in reversed(committed):
            out.extend(p for p in trusted.manifest.parts if p.encryption == encryption)
        return out

    def _reuse(self, plan: PartPlan, candidates: list[Part], encryption: Encryption) -> Part | None:
        shape = _plan_shape(plan)
        for cand in candidates:
            if _part_shape(cand) != shape or not _same_files(plan, cand):
                continue
            info = self.store.head(payload_object_key(self.source, cand.payload))
            if info is None or info.size != cand.payload.size:
                continue
            return Part(plan.name, plan.destination, cand.payload, cand.encryption, cand.files)
        return None

    def _workers(self, plans: list[PartPlan]) -> int:
        """Parts in flight: ``parallel``, as many as there are, and as many as the memory budget holds.

        A part in flight holds at least one multipart part being sent, one being filled and one
        waiting for a free slot.
        """
        if len(plans) <= 1:
            return 1
        largest = max(choose_part_size(_estimate(p)) for p in plans)
        return max(1, min(self.parallel, len(plans), self.store.memory_budget // (3 * largest)))

    def _upload_all(self, plans: list[PartPlan], encryption: Encryption, created: list[str]) -> list[Part]:
        workers = self._workers(plans)
        if workers > 1:
            self.log(f"uploading {len(plans)} parts, {workers} at a time")
        group = PartGroup(workers)
        budget = self.store.memory_budget // workers  # each writer's share of the buffers
        jobs = [functools.partial(self._upload, plan, encryption, created, budget) for plan in plans]
        return group.run(jobs)

    def _upload(
        self, plan: PartPlan, encryption: Encryption, created: list[str], memory_budget: int, ticket: Ticket
    ) -> Part:
        """Stream one part to a fresh ``_blobs/<id>``, its final key: no temporary name, no copy."""
        source = self.source
        entries, size, estimate = len(plan.entries), plan.bytes, _estimate(plan)
        progress = Progress(f"part {plan.name}", size)
        tar = TarStream(plan.entries, on_bytes=progress.add, spend=True)  # the plan's entries are spent here
        key = new_payload_key()
        object_key = payload_object_key(source, Payload(key, 0, ""))
        writer = self.store.writer(object_key, estimate, memory_budget=memory_budget)

        def sink(chunk: bytes) -> None:
            try:
                ticket.check()
                writer.write(chunk)
            except PartsStopped:
                raise
            except BaseException as e:
                tar.abort(e)
                ticket.fail()  # now, not once gpg has wound down: the other parts stop at their next chunk
                raise

        forget = ticket.on_stop(lambda: tar.abort(PartsStopped("stopped because another part failed")))
        try:
            if encryption.encrypted:
                openpgp.encrypt_stream(
                    tar,
                    sink,
                    recipients=source.recipient_public_keys,
                    passphrase=source.encryption_passphrase,
                    compression=source.compression,
                )
            else:
                while chunk := tar.read(CHUNK):
                    sink(chunk)
            ticket.check()  # gpg ends cleanly on a tar the stop cut short: never complete that upload
            created.append(object_key)  # before close: a failed completion may still have made the object
            written = writer.close()
        except BaseException:
            writer.abort()
            raise
        finally:
            forget()
        progress.finish()
        self.log(f"part {plan.name}: {entries} entries, {size} bytes -> {written.key} ({written.size} bytes)")
        payload = Payload(key, written.size, written.sha256)
        return Part(plan.name, plan.destination, payload, encryption, tuple(tar.files))
