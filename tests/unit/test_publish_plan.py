"""publish's planning, without a store: keys, what S3 cannot hold, part selection, the target's keys."""

from __future__ import annotations

import pytest

from offline_bundle.cli.publish import load_target
from offline_bundle.core.config import parse_source
from offline_bundle.core.manifest import Encryption, FileEntry, Manifest, Part, Payload
from offline_bundle.errors import ConfigError
from offline_bundle.publish.objects import PublishResult, plan_keys, select_parts

SHA = "0" * 64


def part(name: str, destination: str, *entries: FileEntry) -> Part:
    return Part(name, destination, Payload("_blobs/" + "1" * 32, 1, SHA), Encryption(), entries)


def f(path: str, size: int = 1) -> FileEntry:
    return FileEntry(path, "file", 0o644, 0, size, SHA)


def d(path: str) -> FileEntry:
    return FileEntry(path, "dir", 0o755, 0)


def link(path: str, target: str) -> FileEntry:
    return FileEntry(path, "symlink", 0o777, 0, target=target)


TARGET = parse_source({"bucket": "products", "prefix": "site-a/"}, s3_only=True)


def test_keys_are_prefix_destination_path_and_what_s3_cannot_hold_is_noted() -> None:
    parts = [
        part("om", "ops-manager/", d("a"), f("a/x.ova"), d("empty"), d("b"), d("b/c"), link("l", "a/x.ova")),
        part("tiles", "", f("cf.pivotal")),
    ]
    result = PublishResult("n", "1", "t")
    planned = plan_keys(TARGET, parts, result)
    assert [p.key for p in planned] == ["site-a/ops-manager/a/x.ova", "site-a/cf.pivotal"]
    assert result.symlinks == ["om/l -> a/x.ova"]
    assert result.empty_dirs == ["om/empty", "om/b/c"]  # b holds c, so only the leaf is empty


def test_two_files_on_one_key_are_refused_before_anything_moves() -> None:
    parts = [part("a", "shared/", f("x")), part("b", "shared/", f("x"))]
    with pytest.raises(ConfigError, match="b/x and a/x would both be published as site-a/shared/x"):
        plan_keys(TARGET, parts, PublishResult("n", "1", "t"))


def test_a_key_longer_than_s3_allows_is_refused() -> None:
    with pytest.raises(ConfigError, match="longer than S3's 1024 bytes"):
        plan_keys(TARGET, [part("a", "x/", f("é" * 520))], PublishResult("n", "1", "t"))


def test_parts_are_chosen_by_name() -> None:
    m = Manifest("n", "1", "now", (part("a", "a/"), part("b", "b/"), part("c", "c/")))
    assert [p.name for p in select_parts(m, ("a", "c"), ())] == ["a", "c"]
    assert [p.name for p in select_parts(m, (), ("b",))] == ["a", "c"]
    with pytest.raises(ConfigError, match="name z, not in n 1"):
        select_parts(m, ("z",), ())


def test_the_target_takes_s3_keys_from_its_variables_only() -> None:
    env = {
        "OFFLINE_BUNDLE_TARGET_BUCKET": "products",
        "OFFLINE_BUNDLE_TARGET_PREFIX": "",  # empty: absent
        "OFFLINE_BUNDLE_TARGET_DISABLE_SSL": "yes",
        "OFFLINE_BUNDLE_BUCKET": "bundles",  # the bundle's store: never the target
    }
    target = load_target(None, env)
    assert (target.bucket, target.prefix, target.disable_ssl) == ("products", "", True)
    with pytest.raises(ConfigError, match="unknown variable OFFLINE_BUNDLE_TARGET_TRUSTED_PUBLIC_KEYS"):
        load_target(None, {**env, "OFFLINE_BUNDLE_TARGET_TRUSTED_PUBLIC_KEYS": "x"})
    # Only the upper-case name is read, so another spelling is refused as the bundle's variables are.
    with pytest.raises(ConfigError, match="unknown variable OFFLINE_BUNDLE_TARGET_bucket"):
        load_target(None, {**env, "OFFLINE_BUNDLE_TARGET_bucket": "other"})
    with pytest.raises(ConfigError, match="OFFLINE_BUNDLE_TARGET_DISABLE_SSL must be true or false"):
        load_target(None, {**env, "OFFLINE_BUNDLE_TARGET_DISABLE_SSL": "maybe"})
    with pytest.raises(ConfigError, match="needs a bucket"):
        load_target(None, {"OFFLINE_BUNDLE_BUCKET": "bundles"})
