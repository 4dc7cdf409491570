"""``pin``: every external artifact of some pipelines, locked to an exact identity, and the pipelines
rewritten to read those artifacts from the air-gapped store.

Why: the original project's promise ("pinned" pipelines consuming everything from the air-gapped
blobstore) was a patch generated and never applied, so nobody noticed it did nothing. Here the lock
is data (``offline.lock.yml``), the rewrite is derived from the lock, and both are deterministic: the
same inputs give the same bytes, and a moved upstream tag changes exactly the one entry it moves.

What is carried and how (the air-gapped keys are ``<prefix><kind>/<slug>/<id>/<file>``):

- container images (``resource_types``, task ``image_resource`` inline and in task files that can be
  read, ``registry-image``/``docker-image`` resources): repository + the linux/amd64 manifest digest
  (+ the index digest). On the far side an ``s3`` object ``rootfs.tgz`` (``unpack: true`` gives the
  ``rootfs/`` + ``metadata.json`` Concourse runs) and ``image.tar`` (an OCI archive, what a get with
  ``format: oci`` gives); with ``--registry``, the same digest in an internal registry instead.
- ``git`` resources: URL + commit; a ``source.tgz`` of the tree at that commit.
- ``github-release`` and ``http`` resources: files by URL (+ SHA-256 when the source or the API
  gives one); one file is carried as itself, several as ``files.tar`` (unpacked by the get).

A resource that cannot be carried (a ``put`` to a carried resource, ``pivnet``, ``s3`` on the
Internet, a custom type nobody can read) is refused by name and makes ``pin`` fail, unless it is
declared internal (``--keep NAME``: it already lives on the air-gapped side) or ``--allow-unpinned``.
``time`` and ``mock`` reach nothing and are kept.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import yaml

from offline_bundle.core.files import write_atomic
from offline_bundle.core.log import Log
from offline_bundle.core.yamlfile import load_yaml
from offline_bundle.errors import BundleError, ConfigError
from offline_bundle.lint.pipeline import load_params
from offline_bundle.offline.lock import (
    FILES_ARCHIVE,
    GIT_FILE,
    LOCK_NAME,
    OCI_FILE,
    ROOTFS_FILE,
    Entry,
    Lock,
    dump_yaml,
    slug,
)
from offline_bundle.offline.resolvers import FileIdentity, Resolvers
from offline_bundle.offline.vars import Vars, credential_refs, needs

DEFAULT_PREFIX = "offline/"
DEFAULT_S3_VAR_PREFIX = "offline_s3_"
IMAGE_TYPES = frozenset({"registry-image", "docker-image"})
FILE_TYPES = frozenset({"http", "http-resource", "http-file"})
INTERNAL_TYPES = frozenset({"time", "mock"})  # these reach nothing outside the worker
_HEX40 = re.compile(r"[0-9a-f]{40}\Z")


class PinError(BundleError):
    """Some resources cannot be carried (each is listed on stderr)."""


# --------------------------------------------------------------------------------------- the pinner


@dataclass(frozen=True)
class PinOptions:
    prefix: str = DEFAULT_PREFIX
    registry: str | None = None  # "HOST[:PORT][/PREFIX]": images via an internal registry
    keep: frozenset[str] = frozenset()  # resources declared internal
    allow_unpinned: bool = False
    s3_var_prefix: str = DEFAULT_S3_VAR_PREFIX
    # The publish target's own prefix: objects land at <target prefix><destination><file>, so the
    # rewritten pipelines read them there (the lock's keys stay relative to the target's prefix).
    target_prefix: str = ""


@dataclass
class PinResult:
    lock: Lock
    pipelines: dict[str, Any]  # output file name -> rewritten pipeline


def _steps(plan: Any) -> Iterator[dict[str, Any]]:
    """Every step of a plan, nested ones and hooks included (the raw dicts, to be changed in place)."""
    if isinstance(plan, list):
        for s in plan:
            yield from _steps(s)
        return
    if not isinstance(plan, dict):
        return
    yield plan
    if "in_parallel" in plan:
        inner = plan["in_parallel"]
        yield from _steps(inner.get("steps") if isinstance(inner, dict) else inner)
    for k in ("do", "aggregate"):
        if k in plan:
            yield from _steps(plan[k])
    if "try" in plan:
        yield from _steps(plan["try"])
    for hook in ("on_success", "on_failure", "on_abort", "on_error", "ensure"):
        if hook in plan:
            yield from _steps(plan[hook])


@dataclass
class _Pipeline:
    """One pipeline being pinned: its deep copy, rewritten in place, and its types, resources and plans by name."""

    name: str
    out: dict[str, Any]
    types: dict[str, dict[str, Any]]
    resources: dict[str, dict[str, Any]]
    plan_of: dict[str, Any]

    @classmethod
    def copy_of(cls, name: str, raw: dict[str, Any]) -> _Pipeline:
        out = copy.deepcopy(raw)
        jobs = _by_name(out.get("jobs"))
        return cls(
            name=name,
            out=out,
            types=_by_name(out.get("resource_types")),
            resources=_by_name(out.get("resources")),
            plan_of={jname: job.get("plan") or [] for jname, job in jobs.items()},
        )

    def steps(self) -> Iterator[dict[str, Any]]:
        """Every step of every job (the raw dicts, to be changed in place)."""
        for plan in self.plan_of.values():
            yield from _steps(plan)

    def add_resource(self, doc: dict[str, Any]) -> None:
        self.out.setdefault("resources", []).append(doc)


def _by_name(items: Any) -> dict[str, dict[str, Any]]:
    """The maps of a pipeline list (resources, resource_types, jobs) by ``name``.

    Names are strings in every pipeline fly accepts; a map without one keeps the key YAML gives it.
    """
    return {cast(str, item.get("name")): item for item in items or [] if isinstance(item, dict)}


class Pinner:
    def __init__(self, resolvers: Resolvers, options: PinOptions, vars_: Vars, log: Log) -> None:
        self.r = resolvers
        self.o = options
        self.vars = vars_
        self.log = log
        prefix = options.prefix
        if prefix and not prefix.endswith("/"):
            raise ConfigError(f"--prefix {prefix!r} must end with '/'")
        if options.target_prefix and not options.target_prefix.endswith("/"):
            raise ConfigError(f"--target-prefix {options.target_prefix!r} must end with '/'")
        self.lock = Lock(
            prefix=prefix,
            form="registry" if options.registry else "s3",
            registry=options.registry,
            pipelines=[],
        )
        # "pipeline/resource" -> (uri, commit, private key) of carried git resources, to read task files
        self._git: dict[str, tuple[str, str, str | None]] = {}

    # ------------------------------------------------------------------ artifacts -> lock entries

    def _add(self, entry: Entry, user: str) -> Entry:
        got = self.lock.entries.setdefault(entry.id, entry)
        got.used_by.append(user)
        return got

    def _carry(
        self, user: str, *, kind: str, id: str, part: str, folder: str, files: dict[str, str], fields: dict[str, Any]
    ) -> Entry:
        """The entry of an artifact carried in ``<prefix><folder>``, its ``files`` (name in the lock: file
        name) all there; an artifact already carried for another user is the same entry."""
        dest = self.o.prefix + folder
        keys = {what: dest + name for what, name in files.items()}
        return self._add(Entry(kind=kind, id=id, part=part, destination=dest, keys=keys, fields=fields), user)

    def image_entry(self, reference: str, tag: str | None, digest: str | None, user: str) -> Entry:
        ident = self.r.image(reference, tag, digest)
        if digest and ident.digest != digest and ident.index_digest != digest:
            raise ConfigError(f"{user}: {reference}@{digest} resolved to {ident.digest}")
        floating = digest is None and (tag in (None, "latest"))
        if floating:
            self.log(f"note: {user}: floating tag {ident.repository}:{tag or 'latest'} locked to {ident.digest}")
        hexd = ident.digest.split(":", 1)[1]
        s = slug(ident.repository)
        return self._carry(
            user,
            kind="image",
            id=f"image:{ident.repository}@{ident.digest}",
            part=f"image-{s[:60]}-{hexd[:12]}",
            folder=f"images/{s}/{hexd}/",
            # With --registry the far side pushes the OCI archive; no rootfs tarball is carried.
            files={"oci": OCI_FILE} if self.o.registry else {"rootfs": ROOTFS_FILE, "oci": OCI_FILE},
            fields={
                "repository": ident.repository,
                "tag": ident.tag,
                "index_digest": ident.index_digest,
                "digest": ident.digest,
                "platform": "linux/amd64",
                "floating": floating,
            },
        )

    def git_entry(self, uri: str, commit: str, ref: str | None, credentials: dict[str, str], user: str) -> Entry:
        if not _HEX40.match(commit):
            raise ConfigError(f"{user}: {commit!r} is not a full commit id")
        plain = _strip_userinfo(uri)
        s = slug(plain)
        return self._carry(
            user,
            kind="git",
            id=f"git:{plain}@{commit}",
            part=f"git-{s[:60]}-{commit[:12]}",
            folder=f"git/{s}/{commit}/",
            files={"source": GIT_FILE},
            fields={"uri": plain, "ref": ref, "commit": commit, "credentials": credentials},
        )

    def files_entry(
        self, name: str, kind: str, version: str, files: list[FileIdentity], credentials: dict[str, str], user: str
    ) -> Entry:
        if not files:
            raise ConfigError(f"{user}: no file to carry (check its globs and version)")
        ident = hashlib.sha256(
            "\n".join(f"{f.url} {f.sha256 or ''}" for f in sorted(files, key=lambda f: f.name)).encode()
        ).hexdigest()
        s = slug(name)
        return self._carry(
            user,
            kind="file",
            id=f"file:{name}@{ident[:16]}",
            part=f"files-{s[:60]}-{ident[:12]}",
            folder=f"files/{s}/{slug(version, 40)}-{ident[:12]}/",
            files={"file": files[0].name} if len(files) == 1 else {"archive": FILES_ARCHIVE},
            fields={
                "source_type": kind,
                "version": version,
                "files": [
                    {"name": f.name, "url": f.url, "size": f.size, "sha256": f.sha256}
                    | ({"api_url": f.api_url} if f.api_url else {})
                    for f in sorted(files, key=lambda f: f.name)
                ],
                "credentials": credentials,
            },
        )

    # ---------------------------------------------------------------------------- the rewrite

    def s3_read(self, key: str) -> tuple[dict[str, Any], dict[str, str]]:
        """The ``s3`` source and get ``version`` that read exactly the carried object ``key``.

        The regexp matches that one key (its version is the key's folder: the digest, commit or
        release id every destination ends with), because resource types have no ``version`` to pin:
        only the regexp can hold them still. Keys are read below the publish target's prefix.
        """
        key = self.o.target_prefix + key
        folder, _, name = key.rpartition("/")
        head, _, capture = folder.rpartition("/")
        p = self.o.s3_var_prefix
        source = {
            "bucket": f"(({p}bucket))",
            "endpoint": f"(({p}endpoint))",
            "region_name": f"(({p}region))",
            "access_key_id": f"(({p}access_key_id))",
            "secret_access_key": f"(({p}secret_access_key))",
            "regexp": _escape(head + "/") + "(" + _escape(capture) + ")" + _escape("/" + name),
        }
        return source, {"path": key}

    def image_resource_doc(self, entry: Entry) -> dict[str, Any]:
        """``type``/``source`` (+ ``params``/``version`` for gets) reading ``entry``'s image on the far side."""
        if self.o.registry:
            repo = self.o.registry.rstrip("/") + "/" + entry.fields["repository"].split("/", 1)[1]
            source: dict[str, Any] = {"repository": repo}
            if entry.fields.get("tag"):
                source["tag"] = entry.fields["tag"]
            return {"type": "registry-image", "source": source, "version": {"digest": entry.fields["digest"]}}
        s3, version = self.s3_read(entry.keys["rootfs"])
        return {"type": "s3", "source": s3, "version": version, "params": {"unpack": True}}

    def refuse(self, pipeline: str, what: str, why: str) -> None:
        self.lock.refused.append({"pipeline": pipeline, "what": what, "why": why})
        self.log(f"{'warning' if self.o.allow_unpinned else 'error'}: {pipeline}: {what}: {why}")

    # -------------------------------------------------------------------------- one pipeline

    def pin_pipeline(self, name: str, raw: Any) -> dict[str, Any]:
        """``raw`` rewritten to read every carried artifact from the air-gapped side; the lock grows with them."""
        if not isinstance(raw, dict):
            raise ConfigError(f"pipeline {name} must be a map")
        self.lock.pipelines.append(name)
        pipeline = _Pipeline.copy_of(name, raw)
        carried = self._carry_resources(pipeline)
        for rname, (entry, how) in carried.items():
            self._rewrite_resource(pipeline, rname, entry, how)
        self._pin_task_images(pipeline)
        self._pin_resource_types(pipeline)
        return pipeline.out

    def _carry_resources(self, p: _Pipeline) -> dict[str, tuple[Entry, str]]:
        """resource -> (its lock entry, how it is read: rootfs|file|archive|source), for those carried."""
        carried: dict[str, tuple[Entry, str]] = {}
        for rname, res in sorted(p.resources.items()):
            found = self._carry_or_refuse(p, rname, res)
            if found is not None:
                carried[rname] = found
        return carried

    def _carry_or_refuse(self, p: _Pipeline, rname: str, res: dict[str, Any]) -> tuple[Entry, str] | None:
        """The resource's entry; None when it is kept (internal) or refused (recorded in the lock)."""
        rtype = res.get("type")
        if rname in self.o.keep:
            self.lock.kept.append({"pipeline": p.name, "resource": rname, "type": str(rtype), "why": "--keep"})
            return None
        if rtype in INTERNAL_TYPES:
            self.lock.kept.append({"pipeline": p.name, "resource": rname, "type": str(rtype), "why": "reaches nothing"})
            return None
        written = any(_put_resource(s) == rname for s in p.steps())
        if written and rtype in IMAGE_TYPES | {"git", "github-release"} | FILE_TYPES:
            self.refuse(p.name, f"resources.{rname}", "a put writes to it: its upstream is outside the air gap")
            return None
        source = self.vars.resolve(res.get("source") or {})
        try:
            carried = self._carry_resource(p.name, rname, rtype, res, source, p.plan_of)
        except ConfigError as e:
            raise ConfigError(f"{p.name}: resources.{rname}: {e}") from None
        if carried is None:
            why = (
                "pivnet needs Broadcom's API; carry its files with the create pipeline's pivnet gets"
                if rtype == "pivnet"
                else f"type {rtype!r} is not one pin can carry (declare it internal with --keep {rname})"
            )
            self.refuse(p.name, f"resources.{rname}", why)
        return carried

    def _rewrite_resource(self, p: _Pipeline, rname: str, entry: Entry, how: str) -> None:
        """The resource reads its carried copy (s3, or the internal registry), and so do its gets."""
        res = p.resources[rname]
        kept: dict[str, Any] = {k: res[k] for k in ("name", "icon", "tags", "public", "check_every") if k in res}
        get_version: dict[str, Any]
        get_params: dict[str, Any] | None
        new: dict[str, Any]
        if entry.kind == "image" and self.o.registry:
            doc = self.image_resource_doc(entry)
            new = {**kept, "type": doc["type"], "source": doc["source"]}
            get_version, get_params = doc["version"], None
        else:
            s3, get_version = self.s3_read(entry.keys[how])
            new = {**kept, "type": "s3", "source": s3}
            get_params = {"unpack": True} if how in ("rootfs", "source", "archive") else None
        res.clear()
        res.update(new)
        self._rewrite_gets(p, rname, entry, get_version, get_params)

    def _rewrite_gets(
        self, p: _Pipeline, rname: str, entry: Entry, get_version: dict[str, Any], get_params: dict[str, Any] | None
    ) -> None:
        """Every get of ``rname`` pinned to the carried version; a ``format: oci`` get reads the OCI archive."""
        image = entry.kind == "image"
        oci_source, oci_version = self.s3_read(entry.keys["oci"]) if image else ({}, {})
        oci_needed = False
        for step in p.steps():
            if _get_resource(step) != rname:
                continue
            oci = image and (step.get("params") or {}).get("format") == "oci"
            if image and self.o.registry:
                step["version"] = dict(get_version)  # registry-image still: its params still apply
                continue
            step.pop("params", None)  # the old type's params mean nothing to s3
            if oci:
                oci_needed = True
                step["resource"] = rname + "-oci"
                step["version"] = dict(oci_version)
                continue
            step["version"] = dict(get_version)
            if get_params:
                step["params"] = dict(get_params)
        if oci_needed:
            p.add_resource({"name": rname + "-oci", "type": "s3", "source": oci_source})

    def _pin_task_images(self, p: _Pipeline) -> None:
        """Task images: inline configs and task files."""
        extra_images: dict[str, Entry] = {}
        for jname, plan in p.plan_of.items():
            aliases = _get_aliases(plan)
            for step in list(_steps(plan)):
                # A step with `image:` runs an artifact of the plan; its resource is rewritten above.
                if "task" in step and not step.get("image"):
                    self._pin_task_step(p, f"jobs.{jname}.task:{step['task']}", step, aliases, extra_images)
        for rname, entry in sorted(extra_images.items()):
            self._add_image_resource(p, rname, entry)

    def _pin_task_step(
        self, p: _Pipeline, what: str, step: dict[str, Any], aliases: Mapping[str, str], extra: dict[str, Entry]
    ) -> None:
        if isinstance(step.get("config"), dict):
            config = step["config"]
            entry = self._task_image(config.get("image_resource"), step, p.name, what)
            if entry is not None:
                config["image_resource"] = self.image_resource_doc(entry)
        elif step.get("file"):
            entry = self._task_file_image(p.name, step, aliases, what)
            if entry is not None:
                # A task file travels inside its repository's tarball, unchanged: the step's
                # `image:` (which wins over the file's image_resource) points at the carried copy.
                rname = self._image_resource_name(entry, p.resources, extra)
                extra[rname] = entry
                task = dict(step)
                step.clear()
                step["do"] = [{"get": rname, "version": None}, {**task, "image": rname}]

    def _add_image_resource(self, p: _Pipeline, rname: str, entry: Entry) -> None:
        """The resource a task file's step gets its image from, and the version its gets were left without."""
        doc = self.image_resource_doc(entry)
        p.add_resource({"name": rname, "type": doc["type"], "source": doc["source"]})
        for step in p.steps():
            if step.get("get") == rname and "version" in step and step["version"] is None:
                step["version"] = doc["version"]
                if doc.get("params"):
                    step["params"] = dict(doc["params"])

    def _pin_resource_types(self, p: _Pipeline) -> None:
        """Resource types: the ones still used are carried; the ones no longer used are dropped."""
        used_types = {r.get("type") for r in p.out.get("resources") or [] if isinstance(r, dict)}
        used_types |= {t.get("type") for t in p.types.values()}
        new_types = []
        for tname, t in sorted(p.types.items()):
            if tname not in used_types:
                self.log(
                    f"note: {p.name}: resource_types.{tname} is no longer used (its resources are carried); dropped"
                )
                continue
            new_types.append(self._pin_resource_type(p.name, tname, t))
        if "resource_types" in p.out or new_types:
            p.out["resource_types"] = new_types
            if not new_types:
                del p.out["resource_types"]

    def _pin_resource_type(self, pipeline: str, tname: str, t: dict[str, Any]) -> dict[str, Any]:
        """The type's definition reading its carried image; unchanged (and refused) when its image cannot be."""
        ttype = t.get("type")
        where = f"{pipeline}: resource_types.{tname}"
        if ttype not in IMAGE_TYPES:
            self.refuse(pipeline, f"resource_types.{tname}", f"its image comes from a {ttype!r} resource")
            return t
        source = self.vars.resolve(t.get("source") or {})
        try:
            repo = needs(source.get("repository"), "source.repository")
            tag = source.get("tag")
            tag = needs(str(tag), "source.tag") if tag is not None else None
            entry = self.image_entry(repo, tag, None, where)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        doc = self.image_resource_doc(entry)
        kept: dict[str, Any] = {k: t[k] for k in ("name", "privileged", "defaults", "check_every", "tags") if k in t}
        new_t: dict[str, Any] = {**kept, "type": doc["type"], "source": doc["source"]}
        if doc.get("params"):
            new_t["params"] = doc["params"]
        return new_t

    def _carry_resource(
        self,
        pipeline: str,
        rname: str,
        rtype: Any,
        raw: Mapping[str, Any],
        source: Mapping[str, Any],
        plan_of: Mapping[str, Any],
    ) -> tuple[Entry, str] | None:
        user = f"{pipeline}: resources.{rname}"
        version = raw.get("version") if isinstance(raw.get("version"), dict) else {}
        version = self.vars.resolve(version)
        if rtype in IMAGE_TYPES:
            repo = needs(source.get("repository"), "source.repository")
            tag = source.get("tag")
            tag = needs(str(tag), "source.tag") if tag is not None else None
            digest = version.get("digest")
            return self.image_entry(repo, tag, digest, user), "rootfs"
        if rtype == "git":
            uri = needs(source.get("uri"), "source.uri")
            if source.get("tag_filter") or source.get("tag_regex"):
                raise ConfigError("a git resource following tags cannot be pinned by pin; give it version: {ref: …}")
            key = source.get("private_key") if isinstance(source.get("private_key"), str) else None
            ref = source.get("branch")
            ref = needs(str(ref), "source.branch") if ref is not None else None
            commit = needs(version["ref"], "version.ref") if version.get("ref") else self.r.git_commit(uri, ref, key)
            creds = credential_refs(raw.get("source") or {}, user, self.log)
            entry = self.git_entry(uri, commit, None if version.get("ref") else ref, creds, user)
            self._git[f"{pipeline}/{rname}"] = (uri, entry.fields["commit"], key)
            return entry, "source"
        if rtype == "github-release":
            globs = _get_globs(plan_of, rname)
            tag, assets = self.r.github_release(source, version.get("tag"))
            chosen = [a for a in assets if not globs or any(fnmatch.fnmatchcase(a.name, g) for g in globs)]
            creds = credential_refs(raw.get("source") or {}, user, self.log)
            entry = self.files_entry(rname, "github-release", tag, chosen, creds, user)
            return entry, "file" if "file" in entry.keys else "archive"
        if rtype in FILE_TYPES:
            url = needs(source.get("url") or source.get("uri"), "source.url")
            sha = source.get("sha256")
            name = url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0] or "file"
            entry = self.files_entry(rname, str(rtype), sha or "url", [FileIdentity(name, url, None, sha)], {}, user)
            return entry, "file"
        return None

    def _task_image(self, ir: Any, step: Mapping[str, Any], pipeline: str, what: str) -> Entry | None:
        """The entry of a task's ``image_resource`` (inline or from its file); None when refused."""
        if not isinstance(ir, dict):
            return None
        if ir.get("type") not in IMAGE_TYPES:
            self.refuse(pipeline, what, f"image_resource of type {ir.get('type')!r}")
            return None
        # A task file's ((vars)) come from the step's vars first, then the pipeline's.
        vars_ = self.vars.with_values(self.vars.resolve(_str_map(step.get("vars"))))
        source = vars_.resolve(ir.get("source") or {})
        try:
            repo = needs(source.get("repository"), "image_resource.source.repository")
            tag = source.get("tag")
            tag = needs(str(tag), "image_resource.source.tag") if tag is not None else None
            digest = (vars_.resolve(ir.get("version") or {}) or {}).get("digest")
            return self.image_entry(repo, tag, digest, f"{pipeline}: {what}")
        except ConfigError as e:
            raise ConfigError(f"{pipeline}: {what}: {e}") from None

    def _task_file_image(
        self, pipeline: str, step: dict[str, Any], aliases: Mapping[str, str], what: str
    ) -> Entry | None:
        path = str(self.vars.resolve(step["file"]))
        artifact, _, inner = path.partition("/")
        git = self._git.get(f"{pipeline}/{aliases.get(artifact, artifact)}")
        if git is None or not inner:
            self.refuse(pipeline, what, f"its file {path} is not in a carried git resource: its image is unknown")
            return None
        uri, commit, key = git
        try:
            task = yaml.safe_load(self.r.git_file(uri, commit, inner, key).decode("utf-8"))
        except (BundleError, UnicodeDecodeError, yaml.YAMLError) as e:
            self.refuse(pipeline, what, f"cannot read its task file {path}: {e}")
            return None
        if not isinstance(task, dict) or "image_resource" not in task:
            self.refuse(pipeline, what, f"its task file {path} has no image_resource (and the step no image:)")
            return None
        return self._task_image(task["image_resource"], step, pipeline, f"{what} ({path})")

    def _image_resource_name(self, entry: Entry, resources: Mapping[str, Any], taken: Mapping[str, Entry]) -> str:
        base = "offline-image-" + slug(entry.fields["repository"].rsplit("/", 1)[-1], 40)
        base += "-" + entry.fields["digest"].split(":", 1)[1][:8]
        for rname, e in taken.items():
            if e.id == entry.id:
                return rname
        name, n = base, 2
        while name in resources or name in taken:
            name, n = f"{base}-{n}", n + 1
        return name

    def pin(self, pipelines: Mapping[str, Any]) -> PinResult:
        out = {name: self.pin_pipeline(name, doc) for name, doc in sorted(pipelines.items())}
        if self.lock.refused and not self.o.allow_unpinned:
            names = ", ".join(f"{r['pipeline']}: {r['what']}" for r in self.lock.refused)
            raise PinError(f"{len(self.lock.refused)} thing(s) cannot be carried: {names} (or pass --allow-unpinned)")
        return PinResult(self.lock, out)


def _get_resource(step: Mapping[str, Any]) -> str | None:
    if "get" not in step:
        return None
    return step.get("resource") or step["get"]


def _put_resource(step: Mapping[str, Any]) -> str | None:
    if "put" not in step:
        return None
    return step.get("resource") or step["put"]


def _get_aliases(plan: Any) -> dict[str, str]:
    return {s["get"]: s.get("resource") or s["get"] for s in _steps(plan) if "get" in s}


def _get_globs(plan_of: Mapping[str, Any], rname: str) -> list[str]:
    globs: list[str] = []
    for plan in plan_of.values():
        for s in _steps(plan):
            if _get_resource(s) == rname:
                g = (s.get("params") or {}).get("globs")
                if g is None:
                    return []  # one get takes every asset
                globs.extend(str(x) for x in g)
    return sorted(set(globs))


def _str_map(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _escape(text: str) -> str:
    """Only the characters that are special in Go's RE2 (the s3 resource's regexp), so keys stay readable."""
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", text)


def _strip_userinfo(uri: str) -> str:
    return re.sub(r"^([a-z+]+://)[^/@]*@", r"\1", uri)


# ------------------------------------------------------------------------------------ entry point


def pin_files(
    paths: list[str],
    out_dir: str,
    *,
    vars_files: list[str],
    options: PinOptions,
    resolvers: Resolvers,
    log: Log,
) -> PinResult:
    """Read pipelines, pin them, write ``out_dir/offline.lock.yml`` and the rewritten pipelines."""
    if not paths:
        raise ConfigError("give at least one pipeline file")
    docs: dict[str, Any] = {}
    for p in paths:
        base = os.path.basename(p)
        if base in docs or base == LOCK_NAME:
            raise ConfigError(f"two pipelines named {base} (or one named like the lock): rename one")
        docs[base] = load_yaml(p, "pipeline")
    vars_ = Vars(load_params(vars_files) if vars_files else {})
    result = Pinner(resolvers, options, vars_, log).pin(docs)
    os.makedirs(out_dir, exist_ok=True)
    for base, doc in result.pipelines.items():
        write_atomic(os.path.join(out_dir, base), dump_yaml(doc))
    write_atomic(os.path.join(out_dir, LOCK_NAME), result.lock.to_yaml())
    return result
