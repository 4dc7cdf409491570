"""The get side: verify the commit object -> download -> check payload hash -> decrypt -> check files -> explode.

Order of trust (docs/security.md): nothing is downloaded before the signature verifies; everything lands in
a hidden staging folder inside the destination and is renamed into place only when every hash and
the exact file set match the signed manifest. On any failure the staging folder is removed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import shutil
import tarfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from offline_bundle import openpgp
from offline_bundle.bundle.approvals import ApprovalStatus, require_approvals
from offline_bundle.bundle.archive import CHUNK, ExtractResult, FileSink, extract_part
from offline_bundle.bundle.commit import COMMIT_NAME, Trusted, payload_object_key, read_commit
from offline_bundle.bundle.parallel import PartGroup, Ticket, default_parallel_parts
from offline_bundle.bundle.pipe import ChunkPipe, PipeClosed
from offline_bundle.bundle.records import write_record
from offline_bundle.core.config import InParams, Source
from offline_bundle.core.log import Log
from offline_bundle.core.manifest import Manifest, Part
from offline_bundle.core.progress import Progress
from offline_bundle.core.streams import ReadStream
from offline_bundle.errors import BundleError, ConfigError, PathError, VerificationError, path_error
from offline_bundle.storage.base import Store

STAGING_PREFIX = ".offline-bundle-staging-"
FREE_SPACE_MARGIN = 1 << 20  # side files and folder entries
DIAGNOSIS_LIMIT = 256 << 20  # bytes read after a failure to tell an altered payload from other faults


@dataclass(frozen=True)
class GetResult:
    trusted: Trusted  # without its texts when the get wrote them into a destination (Trusted.without_texts)
    parts: tuple[str, ...]
    files: int
    bytes: int
    approval: ApprovalStatus | None = None


class HashingReader(ReadStream):
    """Counts and hashes the payload as it streams; ``stop()`` makes it end early (on a failure)."""

    def __init__(self, raw: io.RawIOBase) -> None:
        self._raw = raw
        self.hash = hashlib.sha256()
        self.size = 0
        self._stopped = False
        self._cancelled = False  # another part failed: unlike a stop, no drain reads on

    def stop(self) -> None:
        self._stopped = True

    def cancel(self) -> None:
        self._cancelled = True

    def read(self, size: int = -1) -> bytes:
        if self._stopped or self._cancelled:
            return b""
        data = self._raw.read(CHUNK if size is None or size < 0 else size)
        if data:
            self.hash.update(data)
            self.size += len(data)
        return data

    def drain(self, limit: int | None = None) -> bool:
        """Read (and hash) the rest, at most ``limit`` bytes; True if the end was reached."""
        self._stopped = False
        read = 0
        while limit is None or read <= limit:
            data = self.read(CHUNK)
            if not data:
                return True
            read += len(data)
        return False


def sha256sums_line(digest: str, path: str) -> str:
    """A ``sha256sum`` line; names with a backslash or newline are escaped as GNU coreutils does."""
    if "\\" in path or "\n" in path or "\r" in path:
        escaped = path.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        return f"\\{digest}  {escaped}\n"
    return f"{digest}  {path}\n"


def _make_destination(dest: str) -> None:
    if os.path.lexists(dest) and not os.path.isdir(dest):
        raise PathError(f"destination {dest} is a file, not a folder: give a folder")
    try:
        os.makedirs(dest, exist_ok=True)
    except OSError as e:
        raise path_error(e, dest, "cannot create the destination") from None


def remove_tree(path: str) -> None:
    """Remove a folder we made, also when it holds read-only folders (a part may carry mode 0555
    folders, and a non-root user cannot delete inside them); links are never followed.

    Without recursion: a signed part may nest folders about 1,500 deep (the path limit allows it),
    and ``os.walk`` and ``shutil.rmtree`` recurse once per level and fail near 1,000 with a
    RecursionError, which would leave the staging folder behind and end the step as a crash.
    """
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path) or os.path.islink(path):
        with contextlib.suppress(OSError):
            os.unlink(path)
        return
    stack, folders = [path], []
    while stack:
        folder = stack.pop()
        folders.append(folder)
        try:
            os.chmod(folder, 0o700)
            with os.scandir(folder) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        with contextlib.suppress(OSError):
                            os.unlink(entry.path)
        except OSError:
            continue
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            os.rmdir(folder)


@contextlib.contextmanager
def _writing_into(dest: str) -> Iterator[None]:
    """An OSError while writing the staging folder or moving it into ``dest``, as one line naming ``dest``."""
    try:
        yield
    except OSError as e:
        raise path_error(e, dest, "cannot write into the destination") from None


def _write_signed_texts(staging: str, texts: list[bytes]) -> None:
    """manifest.json.asc and manifest.json from ``[commit object, verified manifest text]``, which is then emptied."""
    for name, data in zip((COMMIT_NAME, "manifest.json"), texts, strict=True):
        with open(os.path.join(staging, name), "wb") as raw:
            raw.write(data)
    texts.clear()


def select_parts(manifest: Manifest, wanted: tuple[str, ...] | None) -> list[Part]:
    if wanted is None:
        return list(manifest.parts)
    names = {p.name for p in manifest.parts}
    missing = [w for w in wanted if w not in names]
    if missing:
        raise ConfigError(
            f"params.parts names {', '.join(missing)}, not in {manifest.name} {manifest.version} "
            f"(its parts: {', '.join(sorted(names))})"
        )
    return [p for p in manifest.parts if p.name in wanted]


# What may follow a tar's end-of-archive blocks: padding to the writer's record size (10 KiB for
# tar and for ours; a large blocking factor stays far below this).
MAX_TAR_PADDING = 1 << 20


def _drain_padding(pipe: ChunkPipe, part: Part) -> None:
    """Read what gpg still has after the archive, never gathering it, and refuse more than padding.

    A carrier who knows a part's plaintext (a public release, empty folders) can encrypt it to the
    public recipient key followed by gigabytes of compressed zeros; the payload hash, complete only
    at the end, would refuse it after gpg had inflated all of it.
    """
    left = MAX_TAR_PADDING
    while chunk := pipe.read(CHUNK):
        left -= len(chunk)
        if left < 0:
            raise VerificationError(f"part {part.name}: the payload goes on after the end of its archive")


class Unpacker:
    def __init__(self, source: Source, store: Store, log: Log, *, parallel: int | None = None) -> None:
        self.source = source
        self.store = store
        self.log = log
        self.parallel = parallel or default_parallel_parts()  # parts fetched side by side, at most
        self.keys = openpgp.DecryptKeys(
            secret_key=source.decryption_private_key,
            secret_key_passphrase=source.decryption_private_key_passphrase,
            passphrase=source.encryption_passphrase,
        )

    def _decryption_key_fingerprint(self) -> str | None:
        if not self.source.decryption_private_key:
            return None
        with openpgp.gpg_home() as gpg:
            return openpgp.import_secret_key(
                gpg,
                self.source.decryption_private_key,
                self.source.decryption_private_key_passphrase,
                "source.decryption_private_key",
            ).fingerprint

    def get(
        self,
        version: str,
        params: InParams,
        dest: str | None,
        *,
        sink: FileSink | None = None,
        record: bool = False,
    ) -> GetResult:
        """Explode into ``dest``; with ``dest`` None, verify everything and write nothing.

        ``sink`` also receives each verified file as it streams (``publish`` from a bundle, no disk).
        ``record``: write a ``get`` transfer record (``_records/``, docs/format.md) once the parts are in place;
        the Concourse ``in`` and ``unpack`` ask for it, ``verify`` and ``publish`` (which records its
        own event) do not.
        """
        trusted = read_commit(self.source, self.store, version)
        manifest = trusted.manifest
        signer = trusted.signer or "UNSIGNED"
        self.log(
            f"verified {manifest.name} {manifest.version}: signed by {signer}"
            + (" (the key has expired since; accepted)" if trusted.signer_expired else "")
        )
        approval = None
        if self.source.approver_public_keys:  # the two-person rule, before any payload is fetched
            approval = require_approvals(self.source, self.store, trusted, self.log)
        parts = select_parts(manifest, params.parts)
        if dest is not None:
            _make_destination(dest)
            self._check_destination(dest, parts)
        if params.skip_download:
            parts = []
        if dest is None:  # verifying or streaming to a sink writes nothing here
            files, total = self._fetch_parts(parts, None, sink)
        else:
            # The commit object and the manifest text go into the staging folder before the parts and
            # are not held while the parts come: at 100,000 files they are 33 MB.
            texts = [trusted.commit_bytes, trusted.manifest_bytes]
            trusted = trusted.without_texts()
            files, total = self._fetch_into(dest, manifest.version, texts, parts, sink)
        if record and dest is not None:
            details = {
                "files": files,
                "bytes": total,
                "skip_download": bool(params.skip_download),
                "signer_expired": bool(trusted.signer_expired),
                **({"approved_by": list(approval.approvers)} if approval else {}),
            }
            write_record(
                self.store,
                self.source,
                "get",
                manifest,
                signer=trusted.signer,
                log=self.log,
                parts=[p.name for p in parts],
                details=details,
            )
        return GetResult(trusted, tuple(p.name for p in parts), files, total, approval)

    def _fetch_into(
        self, dest: str, version: str, texts: list[bytes], parts: list[Part], sink: FileSink | None
    ) -> tuple[int, int]:
        """Fetch the parts into a staging folder inside ``dest``, then rename everything into place.

        ``texts`` (the commit object, the verified manifest text) are written first, and the list is
        emptied so that nothing holds them meanwhile. On any failure, also SIGTERM (Terminated) and
        SIGINT, nothing of the payload stays in the destination: what was already renamed is taken
        back and the staging folder removed.
        """
        staging = os.path.join(dest, STAGING_PREFIX + uuid.uuid4().hex)
        moved: list[str] = []
        try:
            with _writing_into(dest):
                os.mkdir(staging, 0o700)
            if parts:
                self._check_space(dest, parts)
            with _writing_into(dest):
                _write_signed_texts(staging, texts)
            counts = self._fetch_parts(parts, staging, sink)
            with _writing_into(dest):
                self._write_side_files(staging, version, parts)
                self._move_into_place(staging, dest, moved)
        except BaseException:
            for name in moved:
                remove_tree(os.path.join(dest, name))
            remove_tree(staging)
            raise
        return counts

    def _fetch_parts(self, parts: list[Part], staging: str | None, sink: FileSink | None) -> tuple[int, int]:
        """(files, bytes) of the parts, each into its own folder of ``staging`` (None: nowhere), side by side.

        A sink takes one file at a time, so with a sink the parts go one after the other.
        """
        use_key = self._use_key(parts) if parts else False
        group = PartGroup(1 if sink is not None else min(self.parallel, len(parts)))
        if group.workers > 1:
            self.log(f"fetching {len(parts)} parts, {group.workers} at a time")
        jobs = [
            functools.partial(
                self._fetch_part, part, os.path.join(staging, part.name) if staging else None, use_key, sink
            )
            for part in parts
        ]
        results = group.run(jobs)
        return sum(r[0] for r in results), sum(r[1] for r in results)

    def _check_destination(self, dest: str, parts: list[Part]) -> None:
        names = [p.name for p in parts] + ["SHA256SUMS", "manifest.json", COMMIT_NAME, "version"]
        clash = [n for n in names if os.path.lexists(os.path.join(dest, n))]
        if clash:
            raise ConfigError(f"destination {dest} already holds {', '.join(clash)}; give an empty folder")

    def _check_space(self, dest: str, parts: list[Part]) -> None:
        need = sum(p.bytes for p in parts) + FREE_SPACE_MARGIN
        free = shutil.disk_usage(dest).free
        if need > free:
            raise PathError(
                f"not enough free space in {dest}: the parts need {need} bytes, {free} are free; "
                "free some space or choose another folder"
            )

    def _use_key(self, parts: list[Part]) -> bool:
        """Decrypt with the secret key when it is a recipient, else with the passphrase."""
        encrypted = [p for p in parts if p.encryption.encrypted]
        if not encrypted:
            return False
        fpr = self._decryption_key_fingerprint()
        if fpr is not None and all(fpr in p.encryption.recipients for p in encrypted if p.encryption.recipients):
            return True
        if self.source.encryption_passphrase is not None and all(p.encryption.passphrase for p in encrypted):
            return False
        if fpr is not None:
            return True  # gpg names the mismatch precisely (NO_SECKEY)
        raise ConfigError(
            "the bundle is encrypted but neither decryption_private_key nor encryption_passphrase is configured "
            "(a put's own get should use get_params: {skip_download: true})"
        )

    def _fetch_part(
        self,
        part: Part,
        target: str | None,
        use_key: bool,
        sink: FileSink | None = None,
        ticket: Ticket | None = None,
    ) -> tuple[int, int]:
        ticket = ticket or Ticket(PartGroup(1))
        ticket.check()
        progress = Progress(f"part {part.name}", part.payload.size)
        try:
            raw = self.store.open_read(
                payload_object_key(self.source, part.payload), part.payload.size, on_bytes=progress.add
            )
        except BundleError as e:
            raise e.__class__(f"part {part.name}: {e}") from None
        reader = HashingReader(raw)
        forget = ticket.on_stop(reader.cancel)
        try:
            try:
                if part.encryption.encrypted:
                    result = self._decrypt_and_extract(part, reader, target, use_key, sink)
                else:
                    result = extract_part(
                        io.BufferedReader(reader, CHUNK), part.files, target, part=part.name, sink=sink
                    )
            except OSError as e:
                # The disk, not the bundle: a full or read-only destination is the environment's.
                where = os.path.dirname(os.path.dirname(target)) if target else None
                raise path_error(e, where, f"part {part.name}: cannot write into the destination") from None
            except tarfile.TarError as e:
                raise VerificationError(f"part {part.name}: the payload is not a valid tar archive ({e})") from None
            except UnicodeError:
                raise VerificationError(f"part {part.name}: the archive holds a name that is not valid UTF-8") from None
            except BundleError as e:
                ticket.fail()  # the others stop now; this part reads on to diagnose its own failure
                # An altered payload is the likeliest cause of a failed decryption or a bad archive: when the
                # rest is small enough to read, say so precisely instead of reporting the symptom.
                if self._drained(reader) and not self._payload_matches(part, reader):
                    raise self._payload_mismatch(part, reader) from None
                message = str(e) if str(e).startswith(f"part {part.name}:") else f"part {part.name}: {e}"
                raise e.__class__(message) from None
            ticket.check()
            reader.drain()
        finally:
            forget()
            raw.close()
        if not self._payload_matches(part, reader):
            raise self._payload_mismatch(part, reader)
        progress.finish()
        self.log(f"part {part.name}: payload SHA-256 verified, {result.files} files checked")
        return result.files, result.bytes

    @staticmethod
    def _drained(reader: HashingReader) -> bool:
        try:
            return reader.drain(limit=DIAGNOSIS_LIMIT)
        except BundleError:
            return False

    @staticmethod
    def _payload_matches(part: Part, reader: HashingReader) -> bool:
        return reader.size == part.payload.size and reader.hash.hexdigest() == part.payload.sha256

    def _payload_mismatch(self, part: Part, reader: HashingReader) -> VerificationError:
        if reader.size != part.payload.size:
            detail = f"{reader.size} bytes where the signed manifest says {part.payload.size}"
        else:
            detail = "its SHA-256 differs from the signed manifest"
        key = payload_object_key(self.source, part.payload)
        return VerificationError(f"part {part.name}: payload {key} was altered: {detail}")

    def _decrypt_and_extract(
        self, part: Part, reader: HashingReader, target: str | None, use_key: bool, sink: FileSink | None = None
    ) -> ExtractResult:
        pipe = ChunkPipe()
        failure: list[BaseException] = []

        def decrypt() -> None:
            try:
                openpgp.decrypt_stream(reader, pipe.write_chunk, self.keys, use_key=use_key)
            except BaseException as e:  # noqa: BLE001 - handed to the extracting thread
                failure.append(e)
            finally:
                pipe.close_writer()

        worker = threading.Thread(target=decrypt, name=f"decrypt-{part.name}", daemon=True)
        worker.start()
        try:
            result = extract_part(pipe, part.files, target, part=part.name, sink=sink)
            _drain_padding(pipe, part)  # gpg's last bytes so it can finish and report integrity
        except BaseException:
            pipe.abort()
            reader.stop()
            worker.join()
            # A decryption failure (wrong key, broken integrity) explains an unreadable tar better.
            if failure and not isinstance(failure[0], PipeClosed):
                raise failure[0] from None
            raise
        worker.join()
        if failure:
            raise failure[0]
        return result

    def _write_side_files(self, staging: str, version: str, parts: list[Part]) -> None:
        # A generator: the lines of 100,000 files, gathered in a list, took 15 MB for the moment.
        lines = (
            sha256sums_line(f.sha256 or "", f"{p.name}/{f.path}")
            for p in sorted(parts, key=lambda p: p.name)
            for f in p.files
            if f.type == "file"
        )
        if not parts:
            # An empty SHA256SUMS makes `sha256sum -c` fail ("no properly formatted checksum lines").
            self.log("skip_download: no part fetched, so no SHA256SUMS is written (manifest.json lists the files)")
        else:
            with open(os.path.join(staging, "SHA256SUMS"), "w", encoding="utf-8", newline="\n") as f:
                f.writelines(lines)
        with open(os.path.join(staging, "version"), "w", encoding="utf-8") as f:
            f.write(version)

    def _move_into_place(self, staging: str, dest: str, moved: list[str]) -> None:
        """Rename each entry into ``dest``, noting it in ``moved`` so that a failure can take it back."""
        for name in sorted(os.listdir(staging)):
            os.rename(os.path.join(staging, name), os.path.join(dest, name))
            moved.append(name)
        os.rmdir(staging)
