"""``publish`` (docs/reference.md): a bundle's parts -> ordinary objects at ``<prefix><destination><path>``.

Why: on the air-gapped side the install pipelines pick artifacts up with plain ``s3`` resources and
a ``regexp`` (``ops-manager/ops-manager-vsphere-(.*).ova``), so every file of a part has to become
one object under its part's destination in a target bucket, exactly as it was packed.

Two sources, one object writer:

- an exploded folder (what ``in``/``unpack`` wrote): ``manifest.json`` says which files belong to
  each part and their SHA-256; files are uploaded in parallel, each hashed as it goes up, and a file
  whose bytes differ from the manifest is refused (its upload is never completed);
- a bundle straight from its store (``--from-config``/``--from-dir``): verified exactly as ``in``
  verifies it (signature first, payload hash, gpg integrity, every file, the exact file set) while
  each file streams out of the tar into its object; nothing of the bundle touches local disk.

Idempotence: a HEAD comes first. Same size and the same SHA-256 (kept as object metadata
``x-amz-meta-sha256``; without it, the object is read back and hashed) -> skipped; other bytes ->
an error naming the key, unless ``--overwrite``. S3 has no symbolic links and no empty folders:
those are reported and not published. Modes and mtimes are not kept (objects have neither).
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from botocore.exceptions import ClientError

from offline_bundle.bundle.approvals import NotApproved
from offline_bundle.bundle.archive import CHUNK
from offline_bundle.bundle.commit import read_commit
from offline_bundle.bundle.records import write_record
from offline_bundle.bundle.unpack import Unpacker
from offline_bundle.core.config import InParams, Source
from offline_bundle.core.log import Log
from offline_bundle.core.manifest import FileEntry, Manifest, Part, parse_manifest
from offline_bundle.core.progress import Progress, human
from offline_bundle.errors import BundleError, ConfigError, VerificationError
from offline_bundle.storage.base import DEFAULT_MEMORY_BUDGET, MIN_PART, Store, choose_concurrency, choose_part_size
from offline_bundle.storage.s3.client import s3_error
from offline_bundle.storage.s3.multipart import MultipartWriter
from offline_bundle.storage.s3.store import S3Store

SHA256_METADATA = "sha256"  # S3 returns user metadata keys lower-cased, without the x-amz-meta- prefix
SINGLE_PUT_LIMIT = MIN_PART  # above this a file goes up as a multipart upload
DEFAULT_JOBS = 4
MAX_JOBS = 32
MAX_KEY_BYTES = 1024  # S3's limit on a key's UTF-8 length


class PublishError(BundleError):
    """Some files were not published (conflicts, refused bytes, store failures)."""


class PublishConflict(PublishError):
    """The key exists in the target with other bytes and ``--overwrite`` was not given."""


# ------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class Outcome:
    key: str
    size: int
    replaced: bool = False


@dataclass
class PublishResult:
    """What one publish did; ``failures`` are one line each, already safe to print."""

    name: str
    version: str
    target: str
    uploaded: list[Outcome] = field(default_factory=list)
    skipped: list[Outcome] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    symlinks: list[str] = field(default_factory=list)
    empty_dirs: list[str] = field(default_factory=list)
    absent_parts: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, kind: str, item: object) -> None:
        with self._lock:
            getattr(self, kind).append(item)

    @property
    def published_keys(self) -> list[str]:
        return sorted(o.key for o in self.uploaded)

    def summary(self) -> list[str]:
        up = sum(o.size for o in self.uploaded)
        skip = sum(o.size for o in self.skipped)
        replaced = sum(1 for o in self.uploaded if o.replaced)
        lines = [
            f"published {self.name} {self.version} to {self.target}: "
            f"uploaded {len(self.uploaded)} file(s), {up} bytes ({human(up)})"
            + (f", {replaced} of them replacing other bytes (--overwrite)" if replaced else "")
            + f"; skipped {len(self.skipped)} file(s) already there, {skip} bytes ({human(skip)})"
        ]
        if self.symlinks or self.empty_dirs:
            lines.append(
                f"not published (S3 has no such objects): {len(self.symlinks)} symlink(s), "
                f"{len(self.empty_dirs)} empty folder(s)"
            )
        if self.absent_parts:
            lines.append(f"parts not in the folder (not fetched by the get): {', '.join(self.absent_parts)}")
        return lines


# --------------------------------------------------------------------------------------- the target


def target_description(target: Source) -> str:
    return f"s3://{target.bucket}/{target.prefix}" + (f" at {target.endpoint}" if target.endpoint else "")


def object_key(target: Source, destination: str, path: str) -> str:
    return target.prefix + destination + path


class ObjectWriter:
    """One file's bytes -> one object; completed only if they hash to the expected SHA-256.

    Small files are buffered and sent with one PUT after the check; larger ones go up as a multipart
    upload whose parts fly while the bytes arrive, completed only after the check (aborted otherwise),
    so an object never holds bytes the manifest does not vouch for. The bytes travel through
    storage's ``MultipartWriter``; what is decided here is when they may become the object.
    """

    def __init__(
        self,
        publisher: ObjectPublisher,
        key: str,
        size: int,
        sha256: str,
        *,
        replacing: bool,
        on_done: Callable[[Outcome], None],
    ) -> None:
        self.key = key
        self.size = size
        self.sha256 = sha256
        self._replacing = replacing
        self._on_done = on_done
        self._hash = hashlib.sha256()
        self._seen = 0
        # A small file never fills a part (``write`` refuses more than ``size`` bytes): one PUT at commit.
        self.multipart = size > SINGLE_PUT_LIMIT
        part_size = choose_part_size(size) if self.multipart else SINGLE_PUT_LIMIT + 1
        self._upload = MultipartWriter(
            publisher.store.client,
            publisher.store.bucket,
            key,
            part_size=part_size,
            concurrency=choose_concurrency(part_size, publisher.memory_budget) if self.multipart else 1,
            on_bytes=publisher.progress_add,
            metadata={SHA256_METADATA: sha256},
        )

    def write(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self._seen += len(chunk)
        if self._seen > self.size:
            raise VerificationError(f"{self.key}: more than the {self.size} bytes the manifest lists")
        self._upload.write(chunk)

    def _check(self) -> None:
        if self._seen != self.size or self._hash.hexdigest() != self.sha256:
            raise VerificationError(
                f"{self.key}: refused: its bytes ({self._seen}) do not match the SHA-256 of the manifest; "
                "nothing was written at this key"
            )

    def commit(self) -> None:
        try:
            self._check()
            self._upload.finish()
        except BaseException:
            self.abort()
            raise
        self._on_done(Outcome(self.key, self.size, self._replacing))

    def abort(self) -> None:
        self._upload.abort()  # best effort: no object appears, the parts are dropped


class ObjectPublisher:
    """Decides per key (HEAD first) whether to upload, skip, or refuse; makes the writers."""

    def __init__(
        self,
        target: Source,
        *,
        overwrite: bool,
        log: Log,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        progress: Progress | None = None,
    ) -> None:
        self.target = target
        self.store = S3Store.from_source(target)
        self.overwrite = overwrite
        self.log = log
        self.memory_budget = memory_budget
        self.progress = progress

    def progress_add(self, n: int) -> None:
        if self.progress is not None:
            self.progress.add(n)

    def _same_bytes(self, key: str, size: int, sha256: str) -> bool | None:
        """None: no object at ``key``; else whether it holds exactly these bytes."""

        client, bucket = self.store.client, self.store.bucket
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except ClientError as e:
            if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise s3_error(e, f"reading {key}") from None
        except Exception as e:  # noqa: BLE001
            raise s3_error(e, f"reading {key}") from None
        if head["ContentLength"] != size:
            return False
        recorded = (head.get("Metadata") or {}).get(SHA256_METADATA)
        if recorded:
            return recorded == sha256
        # Written by another tool (aws s3 sync, an s3 resource put): read it back and hash it.
        h = hashlib.sha256()
        try:
            body = client.get_object(Bucket=bucket, Key=key, IfMatch=head["ETag"])["Body"]
            while chunk := body.read(CHUNK):
                h.update(chunk)
        except Exception as e:  # noqa: BLE001
            raise s3_error(e, f"reading {key} to compare it") from None
        return h.hexdigest() == sha256

    def writer_for(self, key: str, size: int, sha256: str, result: PublishResult) -> ObjectWriter | None:
        """A writer for ``key``, or None when it is already there (skipped); a conflict raises."""
        same = self._same_bytes(key, size, sha256)
        if same:
            result.add("skipped", Outcome(key, size))
            self.progress_add(size)
            self.log(f"skipped {key}: already there with the same SHA-256")
            return None
        if same is False and not self.overwrite:
            raise PublishConflict(
                f"{key} already exists in {target_description(self.target)} with other bytes; "
                "refused (--overwrite replaces it)"
            )

        def done(outcome: Outcome) -> None:
            result.add("uploaded", outcome)
            self.log(f"{'replaced' if outcome.replaced else 'uploaded'} {key} ({size} bytes)")

        return ObjectWriter(self, key, size, sha256, replacing=same is False, on_done=done)


# ------------------------------------------------------------------------------------------ planning


@dataclass(frozen=True)
class PlannedFile:
    part: str
    entry: FileEntry
    key: str


def select_parts(manifest: Manifest, only: tuple[str, ...], skip: tuple[str, ...]) -> list[Part]:
    names = {p.name for p in manifest.parts}
    unknown = sorted((set(only) | set(skip)) - names)
    if unknown:
        raise ConfigError(
            f"--part/--skip-part name {', '.join(unknown)}, not in {manifest.name} {manifest.version} "
            f"(its parts: {', '.join(sorted(names))})"
        )
    return [p for p in manifest.parts if (not only or p.name in only) and p.name not in skip]


def plan_keys(target: Source, parts: list[Part], result: PublishResult) -> list[PlannedFile]:
    """Every regular file's key; symlinks and empty folders noted; two files on one key refused."""
    planned: list[PlannedFile] = []
    owner: dict[str, str] = {}
    for part in parts:
        has_children: set[str] = set()
        for f in part.files:
            parent = f.path.rpartition("/")[0]
            while parent and parent not in has_children:
                has_children.add(parent)
                parent = parent.rpartition("/")[0]
        for f in part.files:
            where = f"{part.name}/{f.path}"
            if f.type == "symlink":
                result.symlinks.append(f"{where} -> {f.target}")
            elif f.type == "dir":
                if f.path not in has_children:
                    result.empty_dirs.append(where)
            else:
                key = object_key(target, part.destination, f.path)
                if len(key.encode("utf-8")) > MAX_KEY_BYTES:
                    raise ConfigError(f"{where}: its key would be longer than S3's {MAX_KEY_BYTES} bytes")
                if key in owner:
                    raise ConfigError(f"{where} and {owner[key]} would both be published as {key}")
                owner[key] = where
                planned.append(PlannedFile(part.name, f, key))
    return planned


def _note_unpublishable(result: PublishResult, log: Log) -> None:
    for link in result.symlinks:
        log(f"not published: symlink {link} (S3 has no symbolic links)")
    for d in result.empty_dirs:
        log(f"not published: empty folder {d} (S3 has no folders)")


# ---------------------------------------------------------------------------- from an exploded folder


def read_exploded_manifest(folder: str) -> Manifest:
    path = os.path.join(folder, "manifest.json")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ConfigError(
            f"{folder} has no manifest.json: not an exploded bundle (a get or `offline-bundle unpack` writes one)"
        ) from None
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from None
    return parse_manifest(data)


def _check_folder(folder: str, part: Part) -> list[str]:
    """Problems of a part's folder against the manifest: missing, changed or unlisted entries."""
    problems: list[str] = []
    listed = {f.path: f for f in part.files}
    root = os.path.join(folder, part.name)
    for f in part.files:
        full = os.path.join(root, f.path)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            problems.append(f"{part.name}/{f.path} is in manifest.json but not in the folder")
            continue
        kind = (
            "symlink"
            if stat.S_ISLNK(st.st_mode)
            else "dir"
            if stat.S_ISDIR(st.st_mode)
            else "file"
            if stat.S_ISREG(st.st_mode)
            else "special file"
        )
        if kind != f.type:
            problems.append(f"{part.name}/{f.path} is a {kind} in the folder, a {f.type} in manifest.json")
        elif kind == "file" and st.st_size != f.size:
            problems.append(f"{part.name}/{f.path} is {st.st_size} bytes, manifest.json says {f.size}")
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
            if rel not in listed:
                problems.append(f"{part.name}/{rel} is in the folder but not in manifest.json; refused")
    return problems


def publish_exploded(
    folder: str,
    target: Source,
    *,
    overwrite: bool = False,
    jobs: int = DEFAULT_JOBS,
    only: tuple[str, ...] = (),
    skip: tuple[str, ...] = (),
    log: Log,
) -> PublishResult:
    """Upload the parts present in ``folder`` (the exploded layout of docs/format.md) to ``target``."""
    manifest = read_exploded_manifest(folder)
    result = PublishResult(manifest.name, manifest.version, target_description(target))
    parts = _parts_present(folder, manifest, only, skip, result)
    problems = [p for part in parts for p in _check_folder(folder, part)]
    if problems:
        for p in problems:
            log(f"error: {p}")
        raise PublishError(
            f"{folder} does not match its manifest.json ({len(problems)} problem(s), e.g. {problems[0]}); "
            "nothing was published"
        )
    planned = plan_keys(target, parts, result)
    _note_unpublishable(result, log)
    total = sum(p.entry.size for p in planned)
    progress = Progress("publish", total)
    publisher = ObjectPublisher(target, overwrite=overwrite, log=log, progress=progress)
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, MAX_JOBS)), thread_name_prefix="publish") as pool:
        for f in [pool.submit(_publish_file, publisher, folder, item, result) for item in planned]:
            f.result()
    progress.finish()
    record_publish(
        target,
        manifest,
        [p.name for p in parts],
        result,
        signer=None,
        signature="checked by the get that wrote the folder; not checked again by publish",
        log=log,
    )
    return result


def _parts_present(
    folder: str, manifest: Manifest, only: tuple[str, ...], skip: tuple[str, ...], result: PublishResult
) -> list[Part]:
    """The selected parts the folder holds; one asked for by name must be there, others are noted."""
    parts = []
    for part in select_parts(manifest, only, skip):
        if os.path.isdir(os.path.join(folder, part.name)):
            parts.append(part)
        elif part.name in only:
            raise ConfigError(f"--part {part.name}: {folder} has no folder {part.name} (the get did not fetch it)")
        else:
            result.absent_parts.append(part.name)
    return parts


def _publish_file(publisher: ObjectPublisher, folder: str, item: PlannedFile, result: PublishResult) -> None:
    """One file of the folder to its object; a failure is noted in ``result`` and the others go on."""
    try:
        writer = publisher.writer_for(item.key, item.entry.size, item.entry.sha256 or "", result)
        if writer is None:
            return
        try:
            with open(os.path.join(folder, item.part, item.entry.path), "rb") as f:
                while chunk := f.read(CHUNK):
                    writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        writer.commit()
    except BundleError as e:
        result.add("failures", str(e))
        publisher.log(f"error: {e}")
    except OSError as e:
        message = f"{item.part}/{item.entry.path}: cannot read it ({e.strerror})"
        result.add("failures", message)
        publisher.log(f"error: {message}")


def record_publish(
    target: Source,
    manifest: Manifest,
    parts: list[str],
    result: PublishResult,
    *,
    signer: str | None,
    signature: str | None,
    log: Log,
) -> None:
    """The ``publish`` transfer record, in the target bucket under ``<prefix><name>/_records/``.

    Why the target: it is the store the event changed and the one the air-gapped auditors read; the
    bundle's own bucket may be read-only (or a folder on media) by then.
    """

    where = replace(target, name=manifest.name)
    try:
        store: Store | None = S3Store.from_source(where)
    except BundleError as e:  # the record must never fail a publish that happened
        log(f"warning: the publish record was not stored in {target_description(target)}: {e}")
        store = None
    write_record(
        store,
        where,
        "publish",
        manifest,
        signer=signer,
        signature=signature,
        log=log,
        parts=parts,
        details={
            "target": result.target,
            "uploaded": len(result.uploaded),
            "uploaded_bytes": sum(o.size for o in result.uploaded),
            "skipped": len(result.skipped),
            "failures": len(result.failures),
        },
    )


# ---------------------------------------------------------------------------- straight from a bundle


class _PublishSink:
    """The ``FileSink`` of a streaming publish: each verified file becomes its object as it streams.

    Small files are PUT from a bounded pool so that the tar stream keeps moving; a large file's
    multipart upload is completed in line (its parts were already flying while it streamed).
    """

    def __init__(self, publisher: ObjectPublisher, keys: dict[tuple[str, str], str], result: PublishResult) -> None:
        self._publisher = publisher
        self._keys = keys
        self._result = result
        self._pool = ThreadPoolExecutor(max_workers=DEFAULT_JOBS, thread_name_prefix="publish")
        self._slots = threading.Semaphore(DEFAULT_JOBS * 2)
        self._pending: list[Future[None]] = []

    def begin(self, part: str, entry: FileEntry) -> _SinkWriter | None:
        key = self._keys.get((part, entry.path))
        if key is None:
            return None  # a part that is verified but not published (--skip-part)
        try:
            writer = self._publisher.writer_for(key, entry.size, entry.sha256 or "", self._result)
        except PublishConflict as e:
            self._result.add("failures", str(e))
            self._publisher.log(f"error: {e}")
            return None  # keep streaming: every other file is still verified and published
        return _SinkWriter(self, writer) if writer is not None else None

    def submit(self, writer: ObjectWriter) -> None:
        self._slots.acquire()

        def run() -> None:
            try:
                writer.commit()
            except BundleError as e:
                self._result.add("failures", str(e))
                self._publisher.log(f"error: {e}")
            finally:
                self._slots.release()

        self._pending.append(self._pool.submit(run))

    def close(self) -> None:
        """Wait for the PUTs in flight, so that the published list is complete."""
        for f in self._pending:
            f.result()
        self._pool.shutdown()


class _SinkWriter:
    def __init__(self, sink: _PublishSink, writer: ObjectWriter) -> None:
        self._sink = sink
        self._writer = writer

    def write(self, chunk: bytes) -> None:
        self._writer.write(chunk)

    def commit(self) -> None:
        if self._writer.multipart:
            self._writer.commit()
        else:
            self._sink.submit(self._writer)  # already checked against the manifest by extract_part

    def abort(self) -> None:
        self._writer.abort()


def publish_from_bundle(
    source: Source,
    store: Store,
    version: str,
    target: Source,
    *,
    overwrite: bool = False,
    only: tuple[str, ...] = (),
    skip: tuple[str, ...] = (),
    log: Log,
) -> PublishResult:
    """Verify ``version`` as ``in`` does and publish its files as they stream; no local copy."""

    trusted = read_commit(source, store, version)  # the signature, before anything else is believed
    manifest = trusted.manifest
    result = PublishResult(manifest.name, manifest.version, target_description(target))
    parts = select_parts(manifest, only, skip)
    planned = plan_keys(target, parts, result)
    _note_unpublishable(result, log)
    keys = {(p.part, p.entry.path): p.key for p in planned}
    publisher = ObjectPublisher(target, overwrite=overwrite, log=log)
    sink = _PublishSink(publisher, keys, result)
    try:
        if parts:
            Unpacker(source, store, log).get(version, InParams(parts=tuple(p.name for p in parts)), None, sink=sink)
    except NotApproved:
        raise  # refused before any file was streamed: nothing to report as published
    except BundleError as e:
        sink.close()
        published = result.published_keys
        for key in published:
            log(f"published before the failure: {key}")
        raise PublishError(
            f"{e}; publishing stopped. {len(published)} file(s) were already published "
            + (f"(e.g. {published[0]}; all listed above) " if published else "")
            + "- each one's bytes matched the SHA-256 the signed manifest gives for it, but the bundle "
            "as a whole did not verify: treat this version as not published"
        ) from None
    finally:
        sink.close()
    record_publish(target, manifest, [p.name for p in parts], result, signer=trusted.signer, signature=None, log=log)
    return result
