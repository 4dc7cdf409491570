"""The layers of an image applied in order, as the ``rootfs/`` + ``metadata.json`` tarball Concourse runs.

Without a container runtime and without extracting to disk: whiteouts and opaque folders are
resolved from the member headers alone, and the winners are streamed from the gzip layers into one
deterministic gzip tar.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from offline_bundle.core.log import Log
from offline_bundle.offline.oci.layout import HashingWriter, tar_info
from offline_bundle.offline.oci.reference import RegistryError
from offline_bundle.offline.remote.common import quiet

_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_KEEP_PAX = ("SCHILY.xattr.", "LIBARCHIVE.xattr.")


def _normalize(name: str, layer: Path) -> str:
    """A layer member name -> a relative path ("" for the root); refuses names that climb out."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise RegistryError(f"layer {layer.name}: member {name!r} points outside the root")
    return "/".join(parts)


def _ancestors(path: str) -> Iterator[str]:
    while "/" in path:
        path = path.rsplit("/", 1)[0]
        yield path


def _layer_members(path: Path) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    try:
        with tarfile.open(path, mode="r|gz") as tar:
            for member in tar:
                yield tar, member
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise RegistryError(f"layer sha256:{path.name}: not a gzip tar ({type(exc).__name__})") from None


def plan_rootfs(layers: Sequence[Path]) -> tuple[dict[str, tuple[int, int, bool]], dict[str, tarfile.TarInfo]]:
    """Which (layer, member) provides each visible path once the layers are applied in order.

    Layers are read top-down: a path taken by a higher layer hides it below; ``.wh.NAME`` hides NAME
    (and what is under it) in lower layers, ``.wh..wh..opq`` hides everything below its folder in
    lower layers; a non-folder in a higher layer hides a lower layer's folder of that name with its
    contents. Within one layer the last member of a name wins (tar semantics).
    Returns path -> (layer, member number, is folder) and the winning folders' headers.
    """
    final: dict[str, tuple[int, int, bool]] = {}
    folders: dict[str, tarfile.TarInfo] = {}
    deleted: set[str] = set()
    opaque: set[str] = set()
    for li in range(len(layers) - 1, -1, -1):
        new_deleted: set[str] = set()
        new_opaque: set[str] = set()
        for mi, (_, member) in enumerate(_layer_members(layers[li])):
            path = _normalize(member.name, layers[li])
            base = path.rsplit("/", 1)[-1]
            parent = path.rsplit("/", 1)[0] if "/" in path else ""
            if base == _OPAQUE:
                new_opaque.add(parent)
                continue
            if base.startswith(_WHITEOUT):
                if not base.startswith(".wh..wh."):  # other .wh..wh. names are aufs bookkeeping
                    new_deleted.add(f"{parent}/{base[len(_WHITEOUT) :]}" if parent else base[len(_WHITEOUT) :])
                continue
            if not path:
                continue  # the root folder itself is written once, as rootfs/
            held = final.get(path)
            if held is not None and held[0] > li:
                continue
            if path in deleted or any(
                a in deleted or a in opaque or (a in final and final[a][0] > li and not final[a][2])
                for a in _ancestors(path)
            ):
                continue
            if "" in opaque:
                continue
            final[path] = (li, mi, member.isdir())
            if member.isdir():
                folders[path] = member
            else:
                folders.pop(path, None)
        deleted |= new_deleted
        opaque |= new_opaque
    return final, folders


def _rootfs_info(member: tarfile.TarInfo, name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    for attr in ("size", "mtime", "mode", "type", "uid", "gid", "uname", "gname", "devmajor", "devminor"):
        setattr(info, attr, getattr(member, attr))
    info.mtime = int(member.mtime)
    info.pax_headers = {k: v for k, v in member.pax_headers.items() if k.startswith(_KEEP_PAX)}
    return info


def write_rootfs_tarball(layers: Sequence[Path], out: IO[bytes], metadata: dict[str, Any], *, log: Log = quiet) -> str:
    """The layers applied in order as one gzip tar of ``rootfs/`` plus ``metadata.json``; returns its SHA-256.

    Two passes over the (gzip) layers: the first decides which member wins each path
    (``plan_rootfs``), the second copies the winners bottom-up so a hard link comes after its target.
    Folders are written first, sorted, so a parent always precedes its children. Nothing is
    extracted to disk and only member headers are kept in memory. Output is deterministic: gzip
    mtime 0 and no file name, members in a fixed order, the layers' own headers.
    """
    final, folders = plan_rootfs(layers)
    writer = HashingWriter(out)
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=writer, mtime=0, compresslevel=6) as gz,
        tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        meta = json.dumps(metadata, sort_keys=True).encode()
        tar.addfile(tar_info("metadata.json", len(meta)), io.BytesIO(meta))
        tar.addfile(tar_info("rootfs/", 0, directory=True))
        _write_folders(tar, final, folders)
        _write_files(tar, layers, final, log)
    return writer.hash.hexdigest()


def _write_folders(
    tar: tarfile.TarFile, final: dict[str, tuple[int, int, bool]], folders: dict[str, tarfile.TarInfo]
) -> None:
    # Layers often leave out folders (a layer with only usr/bin/x): write them anyway, 0755 root,
    # so extraction never has to guess; never over a link or file that holds that name.
    implied = {a for p in final for a in _ancestors(p) if a not in final}
    for path in sorted(set(folders) | implied):
        if path in folders:
            tar.addfile(_rootfs_info(folders[path], f"rootfs/{path}"))
        else:
            tar.addfile(tar_info(f"rootfs/{path}", 0, directory=True))


def _write_files(
    tar: tarfile.TarFile, layers: Sequence[Path], final: dict[str, tuple[int, int, bool]], log: Log
) -> None:
    """Every winning non-folder, bottom layer first; a hard link waits until its target is written."""
    written: set[str] = set()
    deferred: list[tuple[tarfile.TarInfo, str]] = []
    for li, layer in enumerate(layers):
        for mi, (src, member) in enumerate(_layer_members(layer)):
            if member.isdir():
                continue
            path = _normalize(member.name, layer)
            if final.get(path) != (li, mi, False):
                continue
            info = _rootfs_info(member, f"rootfs/{path}")
            if member.issym():
                info.linkname = member.linkname
            if member.islnk():
                target = _normalize(member.linkname, layer)
                info.linkname = f"rootfs/{target}"
                if target not in written:
                    deferred.append((info, target))
                    continue
            if member.isreg():
                info.type = tarfile.REGTYPE
                data = src.extractfile(member)
                if data is None:  # tarfile gives every regular member a file; this is for the type
                    raise RegistryError(f"layer {layer.name}: member {member.name!r} has no data")
                with data:
                    tar.addfile(info, data)
            else:
                tar.addfile(info)
            written.add(path)
    for info, target in deferred:
        if target in written:
            tar.addfile(info)
        else:
            log(f"rootfs: hard link {info.name} dropped, its target {target} is not in the final image")
