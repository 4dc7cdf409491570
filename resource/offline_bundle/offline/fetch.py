"""``fetch``: every artifact of an ``offline.lock.yml`` downloaded and verified into bundle parts.

Why a folder of parts: the next step is an ordinary ``put`` (or ``offline-bundle pack``), and each
locked artifact becomes its own part so that a bundle built after one upstream tag moved re-uploads
only that artifact's payload (pack reuses the unchanged parts' payloads) and ``export --since``
carries only it. ``parts.json`` beside them lists ``{name, path, destination}`` ready for the put's
``parts`` param (a ``load_var`` step reads it), so the pipeline never lists artifacts by hand.

Verification happens while bytes arrive: registry blobs against their digests (``oci``), files
against the lock's SHA-256 when it has one (``remote``), git trees at exactly the locked commit. A
finished artifact is recorded in ``fetched.json`` with each file's SHA-256 and size; a re-run skips
those whose files are still there with those sizes, so an interrupted fetch resumes artifact by
artifact (and a half-downloaded file resumes where it stopped).
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offline_bundle.core.files import write_atomic
from offline_bundle.core.log import Log
from offline_bundle.core.names import check_part_name
from offline_bundle.errors import BundleError, ConfigError
from offline_bundle.offline.lock import FILES_ARCHIVE, GIT_FILE, OCI_FILE, ROOTFS_FILE, Entry, Lock, load_lock
from offline_bundle.offline.oci.reference import parse_image_ref
from offline_bundle.offline.oci.registry import RegistryClient
from offline_bundle.offline.remote.common import sha256_file
from offline_bundle.offline.remote.git import git_archive
from offline_bundle.offline.remote.http import Downloader
from offline_bundle.offline.vars import Vars

PARTS_FILE = "parts.json"
STATE_FILE = "fetched.json"


class FetchError(BundleError):
    """An artifact could not be fetched or did not verify (named in the message)."""


@dataclass(frozen=True)
class FetchOptions:
    insecure_registries: tuple[str, ...] = ()
    parts_base: str | None = None  # the path parts.json gives before each part (default: the out folder's name)
    ca_bundle: str | None = None
    # More parts for parts.json, e.g. the folder pin wrote (the rewritten pipelines and the lock).
    extra_parts: tuple[dict[str, str], ...] = ()


@dataclass
class FetchResult:
    fetched: list[str]
    skipped: list[str]
    parts: list[dict[str, str]]


class Fetcher:
    def __init__(self, lock: Lock, out: Path, vars_: Vars, options: FetchOptions, log: Log) -> None:
        self.lock = lock
        self.out = out.absolute()  # tools run in other folders (git -C) write into it
        self.vars = vars_
        self.o = options
        self.log = log
        self._registry: RegistryClient | None = None
        self._downloader: Downloader | None = None
        self.state_path = out / STATE_FILE
        self.state: dict[str, Any] = self._load_state()

    # ------------------------------------------------------------------------------ clients

    @property
    def registry(self) -> RegistryClient:
        if self._registry is None:
            self._registry = RegistryClient(insecure_registries=self.o.insecure_registries, log=self.log)
        return self._registry

    @property
    def downloader(self) -> Downloader:
        if self._downloader is None:
            self._downloader = Downloader(log=self.log, ca_bundle=self.o.ca_bundle)
        return self._downloader

    # -------------------------------------------------------------------------------- state

    def _load_state(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.state_path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise ConfigError(f"{self.state_path} is unreadable ({e}); remove it to fetch everything again") from None
        return doc if isinstance(doc, dict) else {}

    def _save_state(self) -> None:
        write_atomic(str(self.state_path), json.dumps(self.state, indent=1, sort_keys=True) + "\n")

    def _done(self, entry: Entry) -> bool:
        """True if an earlier run finished ``entry`` and its files are still there, the same sizes."""
        got = self.state.get(entry.id)
        if not isinstance(got, dict) or got.get("part") != entry.part:
            return False
        files = got.get("files") or {}
        part_dir = self.out / entry.part
        want = {_file_name(entry, k) for k in entry.keys}
        if set(files) != want:
            return False
        for name, info in files.items():
            try:
                if (part_dir / name).stat().st_size != info["size"]:
                    return False
            except (OSError, KeyError, TypeError):
                return False
        return True

    # -------------------------------------------------------------------------------- fetch

    def run(self) -> FetchResult:
        self.out.mkdir(parents=True, exist_ok=True)
        # Repositories are cloned outside the output: it becomes bundle parts (or a Concourse output
        # streamed to the next step), and a clone there would travel for nothing.
        self.git_cache = Path(tempfile.mkdtemp(prefix="offline-bundle-git-"))
        try:
            return self._run()
        finally:
            shutil.rmtree(self.git_cache, ignore_errors=True)

    def _run(self) -> FetchResult:
        fetched, skipped = [], []
        for entry in sorted(self.lock.entries.values(), key=lambda e: e.id):
            check_part_name(entry.part)
            if self._done(entry):
                skipped.append(entry.id)
                self.log(f"{entry.id}: already fetched")
                continue
            part_dir = self.out / entry.part
            work = self.out / f".{entry.part}.partial"
            work.mkdir(parents=True, exist_ok=True)
            try:
                if entry.kind == "image":
                    written = self._image(entry, work)
                elif entry.kind == "git":
                    written = self._git(entry, work)
                elif entry.kind == "file":
                    written = self._files(entry, work)
                else:
                    raise ConfigError(f"lock entry {entry.id}: unknown kind {entry.kind!r}")
            except BundleError as e:
                raise FetchError(f"{entry.id}: {e}") from None
            # Each file was hashed as it was written (by the download, the save or the archive).
            files = {}
            for k in entry.keys:
                name = _file_name(entry, k)
                files[name] = {"sha256": written[name], "size": (work / name).stat().st_size}
            leftovers = sorted(set(os.listdir(work)) - set(files))
            for extra in leftovers:
                _remove(work / extra)
            if part_dir.exists():
                shutil.rmtree(part_dir)
            os.replace(work, part_dir)
            self.state[entry.id] = {"part": entry.part, "files": files}
            self._save_state()
            fetched.append(entry.id)
        parts = self._write_parts()
        return FetchResult(fetched, skipped, parts)

    def _image(self, entry: Entry, work: Path) -> dict[str, str]:
        f = entry.fields
        ref = parse_image_ref(str(f["repository"]), tag=f.get("tag")).with_digest(str(f["digest"]))
        resolved = self.registry.resolve(ref)
        if resolved.digest != f["digest"]:
            raise FetchError(f"the registry gives {resolved.digest} for {ref}, the lock says {f['digest']}")
        saved = self.registry.save(resolved, work, basename="image", rootfs=self.lock.form == "s3")
        os.replace(saved.oci_archive, work / OCI_FILE)
        written = {OCI_FILE: saved.sha256[saved.oci_archive.name]}
        if self.lock.form == "s3":
            if saved.rootfs_tarball is None:
                raise FetchError(f"{ref}: no rootfs tarball was written")
            os.replace(saved.rootfs_tarball, work / ROOTFS_FILE)
            written[ROOTFS_FILE] = saved.sha256[saved.rootfs_tarball.name]
        return written

    def _git(self, entry: Entry, work: Path) -> dict[str, str]:
        f = entry.fields
        creds = self._credentials(entry)
        got = git_archive(
            str(f["uri"]),
            str(f["commit"]),
            work / GIT_FILE,
            cache_dir=self.git_cache,
            log=self.log,
            **({"private_key": creds["private_key"]} if creds.get("private_key") else {}),
        )
        return {GIT_FILE: got.sha256}

    def _files(self, entry: Entry, work: Path) -> dict[str, str]:
        files = entry.fields.get("files") or []
        if not files:
            raise ConfigError("the lock lists no file")
        token = self._credentials(entry).get("access_token")
        single = "file" in entry.keys
        target = work if single else work / ".files"
        target.mkdir(exist_ok=True)
        for item in files:
            name = str(item["name"])
            if "/" in name or name in ("", ".", ".."):
                raise ConfigError(f"file name {name!r} in the lock is not a plain file name")
            url, headers = str(item["url"]), None
            if token and item.get("api_url"):
                # GitHub serves a private repository's asset only from its API URL, to a token.
                url = str(item["api_url"])
                headers = {"Authorization": f"Bearer {token}", "Accept": "application/octet-stream"}
            elif token:
                headers = {"Authorization": f"Bearer {token}"}
            got = self.downloader.download(url, target / name, sha256=item.get("sha256"), headers=headers)
        if single:
            return {got.path.name: got.sha256}
        _deterministic_tar(target, [str(i["name"]) for i in files], work / FILES_ARCHIVE)
        shutil.rmtree(target)
        return {FILES_ARCHIVE: sha256_file(work / FILES_ARCHIVE)[0]}

    def _credentials(self, entry: Entry) -> dict[str, str]:
        out = {}
        for k, ref in (entry.fields.get("credentials") or {}).items():
            value = self.vars.resolve(ref)
            if value == ref:
                raise ConfigError(f"credential {k} is {ref}: give that var with --vars")
            out[k] = str(value)
        return out

    def _write_parts(self) -> list[dict[str, str]]:
        base = self.o.parts_base if self.o.parts_base is not None else self.out.resolve().name
        parts = [
            {"name": e.part, "path": f"{base}/{e.part}" if base else e.part, "destination": e.destination}
            for e in sorted(self.lock.entries.values(), key=lambda e: e.part)
        ]
        names = {p["name"] for p in parts}
        for extra in self.o.extra_parts:
            if extra["name"] in names:
                raise ConfigError(f"--also-part {extra['name']}: a locked artifact's part has that name")
            parts.append(dict(extra))
        write_atomic(str(self.out / PARTS_FILE), json.dumps(parts, indent=1) + "\n")
        return parts


def _file_name(entry: Entry, role: str) -> str:
    """The file a key names, relative to the part (its destination is the key's folder)."""
    key = entry.keys[role]
    if not key.startswith(entry.destination):
        raise ConfigError(f"lock entry {entry.id}: key {key} is not under its destination {entry.destination}")
    name = key[len(entry.destination) :]
    if not name or "/" in name:
        raise ConfigError(f"lock entry {entry.id}: key {key} is not one file below {entry.destination}")
    return name


def _deterministic_tar(folder: Path, names: list[str], dest: Path) -> None:
    """Several files as one plain tar: sorted, mtime 0, root-owned, so the same files give the same bytes."""
    tmp = dest.with_name(dest.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(names):
            info = tar.gettarinfo(str(folder / name), arcname=name)
            info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode = 0, 0, 0, "root", "root", 0o644
            with open(folder / name, "rb") as f:
                tar.addfile(info, f)
    os.replace(tmp, dest)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def parse_part_spec(spec: str) -> dict[str, str]:
    """``NAME=PATH[=DESTINATION]``, the syntax of the pack task's PARTS."""
    bits = spec.split("=")
    if len(bits) not in (2, 3) or not bits[0] or not bits[1]:
        raise ConfigError(f"--also-part {spec!r}: expected NAME=PATH[=DESTINATION]")
    part = {"name": check_part_name(bits[0]), "path": bits[1]}
    if len(bits) == 3:
        part["destination"] = bits[2]
    return part


def fetch_lock(
    lock_path: str, out: str, *, vars_values: Mapping[str, Any], options: FetchOptions, log: Log
) -> FetchResult:
    lock = load_lock(lock_path)
    return Fetcher(lock, Path(out), Vars(vars_values), options, log).run()
