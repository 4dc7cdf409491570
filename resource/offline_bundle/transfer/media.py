"""``export`` and ``import``: a committed version carried on removable media, in pieces with a hash each.

export: the commit object is verified first (the source's ``trusted_public_keys``, or the public half
of its own ``signing_private_key``); then each payload the version references (less those that
``--since V0`` references) is streamed with ranged GETs into pieces on the medium, each written
under a temporary name, synced and renamed, so a piece that exists is whole; the commit object is
written last. Nothing is staged anywhere else: disk use is the pieces plus at most one piece in
progress. A re-run keeps every piece its index lists once it hashes the same again.

import: the medium's commit object is verified first with the far side's trusted keys; a payload
(``_blobs/<id>``, relative to the bundle folder) already in the bucket is skipped only when its
bytes hash to the signed manifest's SHA-256 (read back: a same-size object planted there is
replaced); the others are uploaded piece by piece into
one multipart upload each, no piece sent before it matched its hash, and completed only if the
whole payload matches (``verified_upload``); the commit object goes last, and only if the version
is absent or identical.

The medium is hostile input: whoever carried it may have planted links, pipes, folders where files
belong, or pieces of something else. Every file on it is read and written through ``safe_fs``
(no link followed on any component, regular files only), and nothing read from it is sent before
it matched a hash, so a piece linked to a file of this machine cannot leave it.

The medium layout is described in ``pieces.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, BinaryIO

from offline_bundle.bundle.approvals import carry_approvals
from offline_bundle.bundle.commit import (
    Trusted,
    commit_key,
    latest_version,
    payload_object_key,
    read_commit,
    trust_commit,
    trusted_keys,
    verified_listing,
    write_commit,
)
from offline_bundle.bundle.records import write_record
from offline_bundle.core import safe_fs
from offline_bundle.core.config import Source
from offline_bundle.core.files import write_atomic
from offline_bundle.core.log import Log
from offline_bundle.core.manifest import Manifest, Payload
from offline_bundle.core.progress import Progress, human
from offline_bundle.errors import AlreadyExistsError, BundleError, StoreError, VerificationError
from offline_bundle.storage.base import Store, choose_part_size
from offline_bundle.transfer.pieces import (
    CHUNK,
    DEFAULT_PIECE,
    MAX_PIECES,
    SUMS_NAME,
    TMP_PREFIX,
    FileWindow,
    MediumStore,
    Piece,
    PieceIndex,
    check_key,
    check_piece_size,
    hash_file,
    index_key,
    index_path,
    load_index,
    medium_path,
    piece_name,
    piece_plan,
    pieces_dir,
    pieces_key,
    remove_pieces,
)
from offline_bundle.transfer.verified_upload import PieceSource, holds_payload, upload_verified

FREE_SPACE_MARGIN = 1 << 20
INDEX_BYTES_PER_PIECE = 160  # a generous estimate of one piece's line in the index and SHA256SUMS


def unique_payloads(manifest: Manifest) -> list[tuple[Payload, list[str]]]:
    """Each payload once (parts may share one), with the names of the parts that use it."""
    seen: dict[str, tuple[Payload, list[str]]] = {}
    for p in manifest.parts:
        seen.setdefault(p.payload.key, (p.payload, []))[1].append(p.name)
    return list(seen.values())


def _who_verified(trusted: Trusted) -> str:
    if trusted.signer is None:
        return "UNSIGNED (allow_unsigned)"
    return trusted.signer + (" (key expired since; accepted)" if trusted.signer_expired else "")


# -------------------------------------------------------------------------------------------- export


@dataclass(frozen=True)
class ExportResult:
    version: str
    signer: str | None
    exported: tuple[str, ...]  # payload keys on the medium
    skipped: tuple[str, ...]  # payload keys left out because --since's version references them
    pieces_written: int
    pieces_kept: int
    approvals: tuple[str, ...] = ()  # approval objects written to the medium by this run


@dataclass
class _PayloadPlan:
    payload: Payload
    parts: list[str]
    index: PieceIndex
    kept_bytes: int  # bytes in pieces the index lists and that are on the medium at the right size


class _MediumSide:
    """What export and import both hold: the bundle's source and store, the medium's folder, the log,
    and the environment transfer records take their build details from."""

    def __init__(self, source: Source, store: Store, root: str, log: Log, env: Mapping[str, str] | None) -> None:
        self.source = source
        self.store = store
        self.root = os.path.abspath(root)
        self.log = log
        self.env = env


class Exporter(_MediumSide):
    def __init__(
        self,
        source: Source,
        store: Store,
        root: str,
        log: Log,
        *,
        piece_size: int = DEFAULT_PIECE,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(source, store, root, log, env)
        self.piece_size = check_piece_size(piece_size)

    def export(self, version: str | None = None, since: str | None = None) -> ExportResult:
        source = self.source
        version = version or latest_version(source, self.store, self.log)
        trusted = read_commit(source, self.store, version)
        manifest = trusted.manifest
        self.log(f"verified {manifest.name} {version}: signed by {_who_verified(trusted)}")
        skip: set[str] = set()
        if since is not None:
            if since == version:
                raise BundleError(f"--since {since} is the version being exported: there would be nothing to carry")
            base = read_commit(source, self.store, since)
            skip = {p.payload.key for p in base.manifest.parts}
            self.log(f"--since {since}: leaving out the payloads that version references ({len(skip)})")

        chosen = [(pl, parts) for pl, parts in unique_payloads(manifest) if pl.key not in skip]
        skipped = tuple(pl.key for pl, _ in unique_payloads(manifest) if pl.key in skip)
        os.makedirs(self.root, exist_ok=True)
        plans = [self._plan(pl, parts) for pl, parts in chosen]
        self._check_room(plans, len(trusted.commit_bytes))

        written = kept = 0
        for plan in plans:
            w, k = self._export_payload(plan)
            written, kept = written + w, kept + k

        target = commit_key(source, version)
        if _read(self.root, target) != trusted.commit_bytes:
            write_atomic(check_key(target), trusted.commit_bytes, root=self.root)
        approvals = carry_approvals(source, self.store, MediumStore(self.root), trusted, self.log)
        self.log(
            f"exported {manifest.name} {version} to {self.root}: {len(plans)} payload(s), "
            f"{written} piece(s) written, {kept} kept from an earlier run"
            + (f", {len(skipped)} left out (--since {since})" if skipped else "")
        )
        write_record(
            self.store,
            source,
            "export",
            manifest,
            signer=trusted.signer,
            log=self.log,
            details={
                "to": self.root,
                "piece_size": self.piece_size,
                "since": since,
                "exported": [pl.key for pl, _ in chosen],
                "left_out": list(skipped),
                "pieces_written": written,
                "pieces_kept": kept,
            },
            also=[MediumStore(self.root)],
            env=self.env,
        )
        return ExportResult(
            version, trusted.signer, tuple(pl.key for pl, _ in chosen), skipped, written, kept, tuple(approvals)
        )

    def _key(self, payload: Payload) -> str:
        """The payload's object key: the same in the store and on the medium."""
        return payload_object_key(self.source, payload)

    def _plan(self, payload: Payload, parts: list[str]) -> _PayloadPlan:
        count = len(piece_plan(payload.size, self.piece_size))
        if count > MAX_PIECES:
            raise BundleError(
                f"payload of part {', '.join(parts)} ({human(payload.size)}) needs {count} pieces of "
                f"{human(self.piece_size)}; at most {MAX_PIECES} fit one multipart upload: choose a larger --piece-size"
            )
        fresh = PieceIndex(payload.sha256, payload.size, self.piece_size)
        try:
            index = load_index(self.root, self._key(payload))
        except VerificationError as e:
            self.log(f"warning: {e}; exporting that payload again")
            index = None
        if index is not None and (index.sha256, index.size, index.piece_size) != (
            payload.sha256,
            payload.size,
            self.piece_size,
        ):
            self.log(f"payload {payload.sha256[:12]}… is on the medium in other pieces: writing it again")
            remove_pieces(self.root, self._key(payload))
            index = None
        if index is None:
            index = fresh
        folder = pieces_key(self._key(payload))
        kept = 0
        for p in index.pieces:
            if _regular_size(self.root, f"{folder}/{p.name}") == p.size:
                kept += p.size
        return _PayloadPlan(payload, parts, index, kept)

    def _check_room(self, plans: list[_PayloadPlan], commit_size: int) -> None:
        """Refuse before writing a byte when the medium cannot take what is left to write."""
        need = FREE_SPACE_MARGIN + commit_size
        for plan in plans:
            pieces = len(piece_plan(plan.payload.size, self.piece_size))
            need += plan.payload.size - plan.kept_bytes + 2 * INDEX_BYTES_PER_PIECE * pieces + 1024
        free = shutil.disk_usage(self.root).free
        if need > free:
            raise BundleError(
                f"not enough room on {self.root}: the export needs {human(need)} ({need} bytes), "
                f"{human(free)} ({free} bytes) are free; nothing was written"
            )

    def _export_payload(self, plan: _PayloadPlan) -> tuple[int, int]:
        """(pieces written, pieces kept from an earlier run) of one payload."""
        payload = plan.payload
        folder = pieces_key(self._key(payload))
        with safe_fs.folder_below(self.root, folder, create=True) as fd:
            leftovers = [name for name in os.listdir(fd) if name.startswith(TMP_PREFIX)]
        for leftover in leftovers:  # a piece in progress when an earlier run was killed
            safe_fs.remove_below(self.root, f"{folder}/{leftover}")
        label = f"payload {payload.sha256[:12]}… (part {', '.join(plan.parts)})"
        index = plan.index
        known = {p.number: p for p in index.pieces}
        progress = Progress(f"export {label}", payload.size)
        whole = hashlib.sha256()
        written = kept = 0
        for number, (offset, length) in enumerate(piece_plan(payload.size, self.piece_size), 1):
            path = f"{folder}/{piece_name(number)}"
            entry = known.get(number)
            if (
                entry is not None
                and (entry.offset, entry.size) == (offset, length)
                and _regular_size(self.root, path) == length
            ):
                piece_hash, candidate = hashlib.sha256(), whole.copy()
                hash_file(self.root, path, piece_hash, candidate, on_bytes=progress.add)
                if piece_hash.hexdigest() == entry.sha256:
                    whole, kept = candidate, kept + 1
                    continue
                self.log(f"{label}: piece {entry.name} on the medium does not match its index; writing it again")
            digest = self._write_piece(payload, offset, length, path, whole, progress)
            index = index.with_piece(Piece(number, offset, length, digest))
            write_atomic(index_key(self._key(payload)), index.to_json_bytes(), root=self.root)
            written += 1
        if whole.hexdigest() != payload.sha256:
            remove_pieces(self.root, self._key(payload))
            raise VerificationError(
                f"{label}: the bytes read from {self.store.description} do not match the signed manifest's "
                "SHA-256; its pieces were removed from the medium"
            )
        index = PieceIndex(index.sha256, index.size, index.piece_size, index.pieces, complete=True)
        write_atomic(f"{folder}/{SUMS_NAME}", index.sha256sums().encode("ascii"), root=self.root)
        write_atomic(index_key(self._key(payload)), index.to_json_bytes(), root=self.root)
        progress.finish()
        self.log(f"{label}: {written} piece(s) written, {kept} kept; SHA-256 of the whole payload verified")
        return written, kept

    def _write_piece(
        self,
        payload: Payload,
        offset: int,
        length: int,
        path: str,
        whole: Any,
        progress: Progress,
    ) -> str:
        """Write one piece under a temporary name, then rename it: a link planted at its name is replaced."""
        new = safe_fs.NewFile(self.root, path, tmp_prefix=f"{TMP_PREFIX}{path.rpartition('/')[2]}-")
        piece_hash = hashlib.sha256()
        got = 0
        reader = self.store.open_range(self._key(payload), payload.size, offset, offset + length)
        try:
            while got < length:
                data = reader.read(min(CHUNK, length - got))
                if not data:
                    break
                piece_hash.update(data)
                whole.update(data)
                new.file.write(data)
                got += len(data)
                progress.add(len(data))
            if got != length:
                raise StoreError(f"{self._key(payload)} ended at byte {offset + got} of {payload.size}")
            new.commit()
        except BaseException:
            new.discard()
            raise
        finally:
            reader.close()
        return piece_hash.hexdigest()


def _read(root: str, key: str) -> bytes | None:
    """A regular file on the medium, or None (nothing there, or a link or other node that is to be replaced)."""
    if _regular_size(root, key) is None:
        return None
    try:
        with safe_fs.open_file_below(root, key) as f:
            return f.read()
    except FileNotFoundError:
        return None


def _regular_size(root: str, key: str) -> int | None:
    """The size of a regular file on the medium; None for nothing, a link or any other node."""
    st = safe_fs.lstat_below(root, key)
    return st.st_size if st is not None and stat.S_ISREG(st.st_mode) else None


def _opened(root: str, key: str, size: int, label: str) -> BinaryIO:
    """A regular file on the medium, opened without following links; it must still be ``size`` bytes."""
    try:
        f = safe_fs.open_file_below(root, key)
    except FileNotFoundError:
        raise VerificationError(f"{label} disappeared from the medium during the import") from None
    if os.fstat(f.fileno()).st_size != size:
        f.close()
        raise VerificationError(f"{label} changed size during the import")
    return f


def _ranges_of_file(root: str, key: str, size: int) -> list[PieceSource]:
    """A whole payload file sent as multipart parts (``choose_part_size``), each a window on the file."""
    part = choose_part_size(size)
    path = medium_path(root, key)

    def opener(offset: int, length: int) -> Callable[[], BinaryIO]:
        # A FileWindow is a seekable binary stream, but a RawIOBase, not the BinaryIO protocol PieceSource names.
        return lambda: FileWindow(_opened(root, key, size, path), offset, length)  # type: ignore[return-value]

    return [
        PieceSource(n, min(part, size - off), None, f"bytes {off}- of {path}", opener(off, min(part, size - off)))
        for n, off in enumerate(range(0, size, part), 1)
    ]


# -------------------------------------------------------------------------------------------- import


@dataclass(frozen=True)
class ImportResult:
    version: str
    signer: str | None
    already_committed: bool
    uploaded: tuple[str, ...]  # payload keys uploaded from the medium
    present: tuple[str, ...]  # payload keys the bucket already held
    pieces_uploaded: int
    pieces_resumed: int
    approvals: tuple[str, ...] = ()  # approval objects written to the bucket by this run


_Upload = tuple[Payload, list[str], list[PieceSource]]  # a payload, its parts, its sources on the medium


class Importer(_MediumSide):
    def __init__(
        self,
        source: Source,
        store: Store,
        root: str,
        log: Log,
        *,
        env: Mapping[str, str] | None = None,
        medium_prefix: str | None = None,
    ) -> None:
        super().__init__(source, store, root, log, env)
        # The medium holds the bundle under the exporting side's prefix, which may not be this one's.
        self.medium_source = source if medium_prefix is None else replace(source, prefix=medium_prefix)
        self.medium: MediumStore | None = None
        with contextlib.suppress(FileNotFoundError):
            safe_fs.check_root(self.root)  # a file, or a path too long to open: one clear line
            self.medium = MediumStore(self.root)

    def versions(self) -> list[str]:
        """Committed versions on the medium, oldest first (version_order)."""
        if self.medium is None:
            raise BundleError(f"--from {self.root} is not a folder")
        found = verified_listing(self.medium_source, self.medium, self.log, untrusted_is_error=True).versions
        if not found:
            raise BundleError(
                f"no committed version of bundle {self.source.name} on {self.root} "
                f"(looked for {self.medium_source.key('<version>', 'manifest.json.asc')})"
            )
        return [t.manifest.version for t in found]

    def import_all(self, version: str | None = None) -> list[ImportResult]:
        on_medium = self.versions()
        if version is not None and version not in on_medium:
            raise BundleError(f"version {version} is not on {self.root} (it holds {', '.join(on_medium)})")
        return [self.import_version(v) for v in ([version] if version else on_medium)]

    def import_version(self, version: str) -> ImportResult:
        source = self.source
        key = commit_key(source, version)
        data, trusted = self._verified(version)
        manifest = trusted.manifest
        existing = self.store.get_bytes(key)
        if existing is not None:
            return self._already_committed(version, data, existing, trusted)
        todo, present = self._plan_import(manifest)
        uploaded, resumed = self._upload_all(todo)
        self._commit(key, data, version)
        approvals = self._carry_approvals(trusted)
        self.log(
            f"imported {manifest.name} {version} into {self.store.description}: {len(todo)} payload(s) uploaded, "
            f"{len(present)} already there"
        )
        write_record(
            self.store,
            source,
            "import",
            manifest,
            signer=trusted.signer,
            log=self.log,
            details={
                "from": self.root,
                "uploaded": [p.key for p, _, _ in todo],
                "present": present,
                "pieces_uploaded": uploaded,
                "pieces_resumed": resumed,
            },
            env=self.env,
        )
        return ImportResult(
            version,
            trusted.signer,
            False,
            tuple(p.key for p, _, _ in todo),
            tuple(present),
            uploaded,
            resumed,
            tuple(approvals),
        )

    def _verified(self, version: str) -> tuple[bytes, Trusted]:
        """The medium's commit object of ``version`` and what it says, once its signature verifies."""
        assert self.medium is not None
        data = self.medium.get_bytes(commit_key(self.medium_source, version))
        if data is None:
            raise BundleError(f"version {version} is not on {self.root}")
        trusted = trust_commit(self.source, data, version, keys=trusted_keys(self.source))  # signature first
        self.log(f"verified {trusted.manifest.name} {version} on {self.root}: signed by {_who_verified(trusted)}")
        return data, trusted

    def _carry_approvals(self, trusted: Trusted) -> list[str]:
        assert self.medium is not None
        return carry_approvals(self.medium_source, self.medium, self.store, trusted, self.log, dst_source=self.source)

    def _already_committed(self, version: str, data: bytes, existing: bytes, trusted: Trusted) -> ImportResult:
        """A version the bucket holds: nothing to upload if it is the same commit object, refused if not."""
        if existing != data:
            raise BundleError(
                f"version {version} is already committed in {self.store.description} with another commit "
                "object; refused (prune it there first if it should be replaced)"
            )
        self.log(f"version {version} is already committed in {self.store.description}: no payload to import")
        approvals = self._carry_approvals(trusted)
        return ImportResult(version, trusted.signer, True, (), (), 0, 0, tuple(approvals))

    def _plan_import(self, manifest: Manifest) -> tuple[list[_Upload], list[str]]:
        """(payloads to upload with their sources on the medium, payload keys the bucket already holds).

        Every payload to upload is checked on the medium first: nothing is sent if one is missing.
        """
        todo: list[_Upload] = []
        present: list[str] = []
        problems: list[str] = []
        for payload, parts in unique_payloads(manifest):
            label = f"payload {payload.sha256[:12]}… (part {', '.join(parts)})"
            if holds_payload(
                self.store,
                payload_object_key(self.source, payload),
                payload.size,
                payload.sha256,
                self.log,
                label=label,
            ):
                present.append(payload.key)
                continue
            try:
                todo.append((payload, parts, self._medium_sources(payload, parts)))
            except BundleError as e:
                problems.append(str(e))
        if problems:
            raise BundleError(f"nothing was imported: {'; '.join(problems)}")
        for key_ in present:
            self.log(f"payload {key_.rsplit('/', 1)[-1][:12]}… is already in {self.store.description}: skipped")
        return todo, present

    def _upload_all(self, todo: list[_Upload]) -> tuple[int, int]:
        """(pieces uploaded, pieces resumed from an interrupted upload)."""
        uploaded = resumed = 0
        for payload, parts, sources in todo:
            label = f"payload {payload.sha256[:12]}… (part {', '.join(parts)})"
            target = payload_object_key(self.source, payload)
            outcome = upload_verified(self.store, target, payload.size, payload.sha256, sources, self.log, label=label)
            self.log(
                f"{label}: {outcome.uploaded} piece(s) uploaded, {outcome.resumed} resumed from an interrupted "
                "upload; every piece and the payload's SHA-256 verified"
            )
            uploaded, resumed = uploaded + outcome.uploaded, resumed + outcome.resumed
        return uploaded, resumed

    def _medium_key(self, payload: Payload) -> str:
        return payload_object_key(self.medium_source, payload)

    def _medium_sources(self, payload: Payload, parts: list[str]) -> list[PieceSource]:
        """The payload's pieces on the medium, checked for presence, kind and size before any upload starts.

        A medium written by ``pack --to-dir`` holds the payload as one file: it is sent in ranges then,
        with only the payload's SHA-256 to check (``upload_verified`` reads it all before sending any).
        Every file is a regular file below the medium's root, reached without following a link.
        """
        where = f"payload of part {', '.join(parts)}"
        index = load_index(self.root, self._medium_key(payload))
        if index is None:
            size = safe_fs.regular_size_below(self.root, check_key(self._medium_key(payload)))
            if size is None:
                raise BundleError(
                    f"{where} is neither on {self.root} nor in {self.store.description} "
                    "(a medium exported with --since needs that version imported first)"
                )
            if size != payload.size:
                raise VerificationError(
                    f"{where}: {medium_path(self.root, self._medium_key(payload))} is not the {payload.size} bytes "
                    "the signed manifest says"
                )
            return _ranges_of_file(self.root, self._medium_key(payload), payload.size)
        path = index_path(self.root, self._medium_key(payload))
        if (index.sha256, index.size) != (payload.sha256, payload.size):
            raise VerificationError(f"{path} describes another payload than the signed manifest")
        index.check_complete(path)
        folder, shown = pieces_key(self._medium_key(payload)), pieces_dir(self.root, self._medium_key(payload))
        for piece in index.pieces:
            size = safe_fs.regular_size_below(self.root, f"{folder}/{piece.name}")
            if size is None:
                raise VerificationError(f"{where}: piece {piece.name} is missing from {shown}")
            if size != piece.size:
                raise VerificationError(
                    f"{where}: piece {piece.name} in {shown} is {size} bytes where its index says {piece.size}"
                )
        return self._piece_sources(payload, index)

    def _piece_sources(self, payload: Payload, index: PieceIndex) -> list[PieceSource]:
        folder = pieces_key(self._medium_key(payload))
        shown = pieces_dir(self.root, self._medium_key(payload))

        def opener(key: str, size: int, label: str) -> Callable[[], BinaryIO]:
            return lambda: _opened(self.root, key, size, label)

        return [
            PieceSource(
                p.number,
                p.size,
                p.sha256,
                f"piece {p.name} ({os.path.join(shown, p.name)})",
                opener(f"{folder}/{p.name}", p.size, f"piece {p.name} ({os.path.join(shown, p.name)})"),
            )
            for p in index.pieces
        ]

    def _commit(self, key: str, data: bytes, version: str) -> None:
        try:
            write_commit(self.store, key, data, only_if_absent=True)
        except AlreadyExistsError:
            if self.store.get_bytes(key) != data:
                raise BundleError(
                    f"version {version} was committed in {self.store.description} with another commit object "
                    "while this import ran"
                ) from None
