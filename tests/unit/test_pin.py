"""``pin`` on the fixture pipeline with a resolver that answers from tables (no registry, no git).

The same pipeline goes through the real registry, git and HTTPS server in
``tests/integration/test_pin_fetch.py``; here the rules of the lock and of the rewrite are checked
one by one, fast.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from offline_bundle.errors import ConfigError
from offline_bundle.lint.pipeline import lint_document
from offline_bundle.offline.lock import load_lock, slug
from offline_bundle.offline.pin import PinError, PinOptions, pin_files
from offline_bundle.offline.resolvers import FileIdentity, ImageIdentity
from offline_bundle.offline.vars import Vars
from tests.support.schema import load_schema, schema_errors

DATA = Path(__file__).resolve().parent.parent / "data" / "pin"
PIPELINE = DATA / "install-pcf.yml"
REG = "registry.example:5000"
TASK_FILE = (DATA / "repo" / "tasks" / "create-infrastructure" / "task.yml").read_bytes()
OTHER_TASK = (DATA / "repo" / "tasks" / "other" / "task.yml").read_bytes()
VARS = {
    "registry": REG,
    "pipelines_git_uri": "https://git.example/pcf-pipelines.git",
    "pipelines_git_branch": "main",
    "github_api_url": "https://github.example/api/",
    "github_token": "not-a-real-token",
    "terraform_statefile_bucket": "state",
    "iaas": "vsphere",
}


def digest_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class FakeResolvers:
    """Tables instead of servers; records what was asked."""

    def __init__(self) -> None:
        self.tags = {
            f"{REG}/test/terraform-resource:1.0": digest_of("terraform"),
            f"{REG}/test/pivnet-resource:latest-final": digest_of("pivnet"),
            f"{REG}/test/tool:latest": digest_of("tool"),
            f"{REG}/test/multiarch:1.0": digest_of("multiarch-amd64"),
            f"{REG}/test/czero:v1": digest_of("czero"),
        }
        self.commit = "a" * 40
        self.asked: list[tuple[Any, ...]] = []

    def image(self, reference: str, tag: str | None, digest: str | None) -> ImageIdentity:
        self.asked.append(("image", reference, tag, digest))
        got = self.tags[f"{reference}:{tag or 'latest'}"]
        index = digest_of("multiarch-index") if "multiarch" in reference else None
        return ImageIdentity(reference, tag or "latest", index, got)

    def git_commit(self, uri: str, ref: str | None, private_key: str | None) -> str:
        self.asked.append(("git", uri, ref))
        return self.commit

    def git_file(self, uri: str, commit: str, path: str, private_key: str | None) -> bytes:
        self.asked.append(("file", uri, commit, path))
        return {"tasks/create-infrastructure/task.yml": TASK_FILE, "tasks/other/task.yml": OTHER_TASK}[path]

    def github_release(self, source: Mapping[str, Any], tag: str | None) -> tuple[str, list[FileIdentity]]:
        self.asked.append(("release", source["owner"], source["repository"], tag))
        base = "https://github.example/pivotal-cf/om/releases/download/7.9.0/"
        return "7.9.0", [
            FileIdentity("om-linux-amd64-7.9.0", base + "om-linux-amd64-7.9.0", 10, "1" * 64),
            FileIdentity("om-linux-arm64-7.9.0", base + "om-linux-arm64-7.9.0", 11, None),
            FileIdentity("om-darwin-7.9.0", base + "om-darwin-7.9.0", 12, "3" * 64),
        ]


def run_pin(
    tmp_path: Path,
    resolvers: FakeResolvers | None = None,
    *,
    options: PinOptions | None = None,
    pipeline: Path = PIPELINE,
    vars_: Mapping[str, Any] = VARS,
    logs: list[str] | None = None,
) -> tuple[Path, dict[str, Any], FakeResolvers]:
    resolvers = resolvers or FakeResolvers()
    tmp_path.mkdir(parents=True, exist_ok=True)
    params = tmp_path / "params.yml"
    params.write_text(yaml.safe_dump(dict(vars_)))
    out = tmp_path / "out"
    opts = options or PinOptions(keep=frozenset({"terraform-state"}))
    pin_files(
        [str(pipeline)],
        str(out),
        vars_files=[str(params)],
        options=opts,
        resolvers=resolvers,
        log=(logs.append if logs is not None else lambda _m: None),
    )
    return out, yaml.safe_load((out / pipeline.name).read_text()), resolvers


def resources(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in doc["resources"]}


def steps(plan: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for s in plan if isinstance(plan, list) else [plan]:
        if not isinstance(s, dict):
            continue
        out.append(s)
        for k in ("do", "in_parallel", "try"):
            if k in s:
                out += steps(s[k])
        for hook in ("on_failure", "on_success", "ensure", "on_abort", "on_error"):
            if hook in s:
                out += steps(s[hook])
    return out


def test_the_lock_holds_every_artifact_with_an_exact_identity(tmp_path: Path) -> None:
    logs: list[str] = []
    out, _, _ = run_pin(tmp_path, logs=logs)
    lock = load_lock(out / "offline.lock.yml")
    by_kind: dict[str, list[Any]] = {}
    for e in lock.entries.values():
        by_kind.setdefault(e.kind, []).append(e)
    images = {e.fields["repository"]: e for e in by_kind["image"]}
    # pivnet-resource is not here: its only user (none) -- the type is unused and dropped.
    assert sorted(images) == sorted(f"{REG}/test/{n}" for n in ("terraform-resource", "tool", "multiarch", "czero"))
    for repo, e in images.items():
        name = repo.rsplit("/", 1)[1]
        want = digest_of("multiarch-amd64" if name == "multiarch" else name.replace("-resource", ""))
        assert e.fields["digest"] == want
        hexd = want.split(":")[1]
        assert e.keys == {
            "rootfs": f"offline/images/{slug(repo)}/{hexd}/rootfs.tgz",
            "oci": f"offline/images/{slug(repo)}/{hexd}/image.tar",
        }
        assert e.destination == f"offline/images/{slug(repo)}/{hexd}/"
    assert images[f"{REG}/test/multiarch"].fields["index_digest"] == digest_of("multiarch-index")
    assert images[f"{REG}/test/tool"].fields["floating"] is True
    assert images[f"{REG}/test/czero"].fields["floating"] is False
    assert any("floating tag" in m and "test/tool:latest" in m for m in logs), logs
    # Who uses what: the czero image comes from a task file inside the git repository.
    assert any("task.yml" in u for u in images[f"{REG}/test/czero"].used_by)

    (git,) = by_kind["git"]
    assert git.fields["commit"] == "a" * 40 and git.fields["ref"] == "main"
    assert git.keys == {"source": f"offline/git/{slug(VARS['pipelines_git_uri'])}/{'a' * 40}/source.tgz"}

    (files,) = by_kind["file"]
    # globs: om-linux-* only; two files -> carried as one tar, unpacked by the get.
    assert [f["name"] for f in files.fields["files"]] == ["om-linux-amd64-7.9.0", "om-linux-arm64-7.9.0"]
    assert files.fields["version"] == "7.9.0"
    assert list(files.keys) == ["archive"] and files.keys["archive"].endswith("/files.tar")
    assert files.fields["credentials"] == {"access_token": "((github_token))"}

    assert [(k["resource"], k["why"]) for k in lock.kept] == [
        ("schedule", "reaches nothing"),
        ("terraform-state", "--keep"),
    ]
    assert lock.refused == []
    # Part names obey the naming rule and are unique.
    parts = [e.part for e in lock.entries.values()]
    assert len(set(parts)) == len(parts)
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", p) and len(p) <= 200 for p in parts)
    # No secret value is written anywhere in the output.
    for f in out.iterdir():
        assert VARS["github_token"] not in f.read_text(), f


def test_the_rewritten_pipeline_reaches_nothing_but_the_air_gapped_store(tmp_path: Path) -> None:
    out, doc, _ = run_pin(tmp_path)
    lock = load_lock(out / "offline.lock.yml")
    keys = {k for e in lock.entries.values() for k in e.keys.values()}
    res = resources(doc)

    # Every resource is s3 over the offline vars, except the kept ones.
    for name, r in res.items():
        if name in ("schedule", "terraform-state"):
            continue
        assert r["type"] == "s3", name
        assert r["source"]["bucket"] == "((offline_s3_bucket))"
        # The regexp matches exactly one locked key.
        matching = [k for k in keys if re.fullmatch(r["source"]["regexp"], k)]
        assert len(matching) == 1, (name, r["source"]["regexp"])
    assert res["terraform-state"]["type"] == "terraform"
    # The custom type is still used (by the kept resource): carried; pivnet's is no longer: dropped.
    (tf,) = doc["resource_types"]
    assert tf["name"] == "terraform" and tf["type"] == "s3" and tf["params"] == {"unpack": True}
    assert re.fullmatch(tf["source"]["regexp"], next(k for k in keys if "terraform-resource" in k and "rootfs" in k))

    plan = steps(doc["jobs"][0]["plan"])
    gets = {s["get"]: s for s in plan if "get" in s}
    assert gets["pcf-pipelines"]["params"] == {"unpack": True}
    assert gets["pcf-pipelines"]["version"]["path"].endswith("/source.tgz")
    assert gets["tool-image"]["params"] == {"unpack": True} and gets["tool-image"]["version"]["path"].endswith(
        "/rootfs.tgz"
    )
    # format: oci -> the OCI archive, through its own s3 resource (a resource has one regexp).
    assert gets["tool-oci"]["resource"] == "tool-image-oci" and "params" not in gets["tool-oci"]
    assert gets["tool-oci"]["version"]["path"].endswith("/image.tar")
    assert re.fullmatch(res["tool-image-oci"]["source"]["regexp"], gets["tool-oci"]["version"]["path"])
    assert gets["om-cli"]["params"] == {"unpack": True}
    assert gets["schedule"] == {"get": "schedule", "trigger": True}

    # The task whose file names an image: a get of the carried image, and `image:` on the task.
    tasks = {s["task"]: s for s in plan if "task" in s}
    ci = tasks["create-infrastructure"]
    assert ci["image"].startswith("offline-image-czero-")
    assert gets[ci["image"]]["version"]["path"].endswith("/rootfs.tgz")
    assert res[ci["image"]]["type"] == "s3"
    # Inline: the image_resource itself is rewritten.
    ir = tasks["check-versions"]["config"]["image_resource"]
    assert ir["type"] == "s3" and ir["params"] == {"unpack": True} and ir["version"]["path"] in keys
    # A task with `image:` and a hook's inline task.
    assert tasks["use-tool"]["image"] == "tool-image"
    second = {s["task"]: s for s in steps(doc["jobs"][1]["plan"]) if "task" in s}
    assert second["report"]["config"]["image_resource"]["type"] == "s3"
    assert second["configure"]["image"] == ci["image"]

    # Nothing in the output is an address of the upstream registry, git server or GitHub (their
    # names survive only inside object keys, as slugs).
    text = (out / "install-pcf.yml").read_text()
    for upstream in (REG + "/", "://", "git@"):
        assert upstream not in text
    # And Concourse would take it (lint-pipeline's checks).
    kind, problems = lint_document(doc)
    assert kind == "pipeline" and problems == [], problems


@pytest.mark.parametrize("registry", [None, "registry.airgap:5000/mirror"])
def test_the_rewritten_pipeline_validates_against_the_concourse_schema(tmp_path: Path, registry: str | None) -> None:
    schema = load_schema()
    _, doc, _ = run_pin(tmp_path, options=PinOptions(registry=registry, keep=frozenset({"terraform-state"})))
    assert schema_errors(schema, doc) == []


def test_pin_is_deterministic_and_a_moved_tag_changes_one_entry(tmp_path: Path) -> None:
    out1, _, _ = run_pin(tmp_path / "a")
    out2, _, _ = run_pin(tmp_path / "b")
    for name in ("offline.lock.yml", "install-pcf.yml"):
        assert (out1 / name).read_bytes() == (out2 / name).read_bytes(), name

    moved = FakeResolvers()
    moved.tags[f"{REG}/test/tool:latest"] = digest_of("tool, rebuilt")
    out3, _, _ = run_pin(tmp_path / "c", moved)
    before = {e.id: e.to_doc() for e in load_lock(out1 / "offline.lock.yml").entries.values()}
    after = {e.id: e.to_doc() for e in load_lock(out3 / "offline.lock.yml").entries.values()}
    assert len(before) == len(after)
    gone = set(before) - set(after)
    new = set(after) - set(before)
    assert len(gone) == len(new) == 1
    assert after[new.pop()]["digest"] == digest_of("tool, rebuilt")
    assert all(before[i] == after[i] for i in set(before) & set(after))


def test_what_cannot_be_carried_is_refused_by_name(tmp_path: Path) -> None:
    doc = yaml.safe_load(PIPELINE.read_text())
    doc["resources"].append({"name": "pcf", "type": "pivnet", "source": {"product_slug": "elastic-runtime"}})
    doc["jobs"][0]["plan"].append({"get": "pcf"})
    doc["jobs"][0]["plan"].append({"put": "tool-image", "params": {"image": "x/image.tar"}})
    pipeline = tmp_path / "p.yml"
    pipeline.write_text(yaml.safe_dump(doc))
    logs: list[str] = []
    # Without --keep, terraform-state (a custom type pin cannot read) is refused too.
    with pytest.raises(PinError) as err:
        run_pin(tmp_path, options=PinOptions(), pipeline=pipeline, logs=logs)
    message = str(err.value)
    for name in ("resources.pcf", "resources.tool-image", "resources.terraform-state"):
        assert name in message
    assert not (tmp_path / "out" / "offline.lock.yml").exists()
    assert any(m.startswith("error: p.yml: resources.pcf: pivnet") for m in logs), logs

    out, rewritten, _ = run_pin(
        tmp_path, options=PinOptions(allow_unpinned=True, keep=frozenset({"terraform-state"})), pipeline=pipeline
    )
    lock = load_lock(out / "offline.lock.yml")
    assert sorted(r["what"] for r in lock.refused) == ["resources.pcf", "resources.tool-image"]
    assert resources(rewritten)["pcf"]["type"] == "pivnet"  # left as it was, and listed as refused


def test_unresolved_vars_in_identity_fields_and_literal_credentials(tmp_path: Path) -> None:
    partial = dict(VARS)
    del partial["pipelines_git_uri"]
    with pytest.raises(ConfigError, match=r"resources\.pcf-pipelines.*source\.uri is '\(\(pipelines_git_uri\)\)'"):
        run_pin(tmp_path, vars_=partial)

    doc = yaml.safe_load(PIPELINE.read_text())
    literal = copy.deepcopy(doc)
    literal["resources"][2]["source"]["access_token"] = "ghp_literal_token_value"
    pipeline = tmp_path / "p.yml"
    pipeline.write_text(yaml.safe_dump(literal))
    logs: list[str] = []
    out, _, _ = run_pin(tmp_path, pipeline=pipeline, logs=logs)
    assert "ghp_literal_token_value" not in (out / "offline.lock.yml").read_text()
    assert any("om-cli.source.access_token is a literal value" in m for m in logs), logs


def test_the_registry_form_points_images_at_the_internal_registry_by_digest(tmp_path: Path) -> None:
    out, doc, _ = run_pin(
        tmp_path, options=PinOptions(registry="registry.airgap:5000/mirror", keep=frozenset({"terraform-state"}))
    )
    lock = load_lock(out / "offline.lock.yml")
    assert lock.form == "registry"
    res = resources(doc)
    assert res["tool-image"] == {
        "name": "tool-image",
        "type": "registry-image",
        "source": {"repository": "registry.airgap:5000/mirror/test/tool", "tag": "latest"},
    }
    plan = steps(doc["jobs"][0]["plan"])
    gets = {s["get"]: s for s in plan if "get" in s}
    assert gets["tool-image"]["version"] == {"digest": digest_of("tool")}
    assert gets["tool-oci"]["params"] == {"format": "oci"} and gets["tool-oci"]["version"] == {
        "digest": digest_of("tool")
    }
    (tf,) = doc["resource_types"]
    assert tf["type"] == "registry-image" and tf["source"]["repository"].startswith("registry.airgap:5000/mirror/")
    # git and files still come from S3.
    assert res["pcf-pipelines"]["type"] == "s3"


def test_vars_interpolation_rules() -> None:
    v = Vars({"a": "x", "m": {"k": "v"}, "l": [1, 2], "n": 5})
    assert v.resolve("((a))") == "x"
    assert v.resolve("((m.k))") == "v"
    assert v.resolve("((l))") == [1, 2]
    assert v.resolve("pre-((a))-((n))") == "pre-x-5"
    assert v.resolve("((vault:a))") == "((vault:a))"  # a named var source is not ours
    assert v.resolve("((missing))") == "((missing))"
    assert v.resolve({"k": ["((a))", "((m))"]}) == {"k": ["x", {"k": "v"}]}


def test_slugs_are_safe_and_bounded() -> None:
    assert slug("127.0.0.1:5000/test/tool") == "127.0.0.1-5000-test-tool"
    assert slug("https://user@git.example/a b/../c.git") == "https-user-git.example-a-b-.-c.git"
    long = slug("x" * 500)
    assert len(long) == 80 and long != slug("x" * 499)
