"""git repositories for the connected side: resolve a ref, read one file, archive a tree at a commit.

Commits are fetched by their full hash (shallow, into a cache reused across calls) and checked to be
that commit before anything is read from them; git never prompts, and a private key lives only in a
0600 temporary file for the duration of one command.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from offline_bundle.core.log import Log
from offline_bundle.core.progress import human
from offline_bundle.errors import ConfigError
from offline_bundle.offline.remote.common import (
    HEX40,
    Downloaded,
    RemoteError,
    quiet,
    redact_uri,
    redact_url_in_text,
    remove_files,
    sha256_file,
)

_TEMP_DIRS: list[str] = []


def _temp_dir(prefix: str) -> Path:
    path = tempfile.mkdtemp(prefix=prefix)
    if not _TEMP_DIRS:
        atexit.register(_remove_temp_dirs)
    _TEMP_DIRS.append(path)
    return Path(path)


def _remove_temp_dirs() -> None:
    for path in _TEMP_DIRS:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def git_env(private_key: str | None = None) -> Iterator[dict[str, str]]:
    """The environment for git: never prompt; with ``private_key``, SSH uses it from a 0600 temp file
    that is deleted afterwards (host keys are not checked, as Concourse's git resource does)."""
    env = dict(os.environ)
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.pop("GIT_ASKPASS", None)
    env.pop("SSH_ASKPASS", None)
    if not private_key:
        env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        yield env
        return
    folder = Path(tempfile.mkdtemp(prefix="ob-ssh-"))
    try:
        os.chmod(folder, 0o700)
        key = folder / "id"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(private_key.strip() + "\n")
        env["GIT_SSH_COMMAND"] = (
            f"ssh -i {shlex.quote(str(key))} -o IdentitiesOnly=yes -o BatchMode=yes "
            "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
        )
        yield env
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _git(args: list[str], *, env: Mapping[str, str], what: str, cwd: Path | None = None) -> bytes:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, env=dict(env), capture_output=True, timeout=600)
    except FileNotFoundError:
        raise RemoteError(f"{what}: the git binary is not installed") from None
    except subprocess.TimeoutExpired:
        raise RemoteError(f"{what}: git {args[0]} took more than 10 minutes") from None
    if proc.returncode != 0:
        raise RemoteError(f"{what}: git {args[0]} failed: {_git_error(proc.stderr)}")
    return proc.stdout


def _git_error(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    wanted = [line for line in lines if line.startswith(("fatal:", "error:", "ERROR:", "ssh:"))] or lines
    text = " / ".join(wanted[-2:]) or "no message"
    return redact_url_in_text(text)[:400]


def _ls_remote(uri: str, patterns: list[str], env: Mapping[str, str], what: str) -> dict[str, str]:
    out = _git(["ls-remote", "--symref", "--", uri, *patterns], env=env, what=what)
    refs: dict[str, str] = {}
    for line in out.decode("utf-8", "replace").splitlines():
        value, _, name = line.partition("\t")
        if value.startswith("ref: "):
            refs["symref:" + name] = value[5:].strip()
        elif name:
            refs[name] = value.strip()
    return refs


def git_resolve(
    uri: str,
    ref: str | None,
    *,
    log: Log = quiet,
    private_key: str | None = None,
    cache_dir: Path | None = None,
) -> str:
    """The commit that ``ref`` names in the repository at ``uri``, from ``git ls-remote``.

    ``ref`` None → the remote's HEAD; a full ``refs/…`` name as is; otherwise the branch of that name,
    else the tag (an annotated tag is peeled to its commit). A 40-hex ``ref`` is a commit: it is
    returned when a ref points at it, else after fetching it (which proves it exists).
    """
    what = f"{redact_uri(uri)} ({ref or 'HEAD'})"
    ref = ref.strip() if ref else None
    with git_env(private_key) as env:
        if ref and HEX40.match(ref.lower()):
            commit = ref.lower()
            refs = _ls_remote(uri, [], env, what)
            if commit not in refs.values():
                _fetch_commit(uri, commit, _repo_cache(uri, cache_dir), env, what)
            log(f"{redact_uri(uri)}: commit {commit} exists")
            return commit
        if ref is None:
            refs = _ls_remote(uri, ["HEAD"], env, what)
            head = refs.get("HEAD")
            if not head:
                raise RemoteError(f"{what}: the repository has no HEAD (empty, or HEAD names a missing branch)")
            log(f"{redact_uri(uri)}: HEAD ({refs.get('symref:HEAD', 'detached')}) is {head}")
            return head
        if ref.startswith("refs/"):
            candidates = [ref + "^{}", ref]
        else:
            candidates = [f"refs/heads/{ref}", f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}"]
        patterns = candidates  # ls-remote prints a peeled tag (name^{}) only when asked for by that name
        refs = _ls_remote(uri, patterns, env, what)
        for name in candidates:
            if name in refs:
                log(f"{redact_uri(uri)}: {name.removesuffix('^{}')} is {refs[name]}")
                return refs[name]
        raise RemoteError(f"{what}: no branch or tag of that name")


def _repo_cache(uri: str, cache_dir: Path | None) -> Path:
    """A bare repository per URI (keyed by its hash; the URI itself is never written into it)."""
    base = cache_dir or _DEFAULT_CACHE.get("dir") or _DEFAULT_CACHE.setdefault("dir", _temp_dir("ob-git-"))
    repo = Path(base) / hashlib.sha256(uri.encode()).hexdigest()[:24]
    if not (repo / "HEAD").exists():
        repo.mkdir(parents=True, exist_ok=True)
        _git(["init", "--quiet", "--bare", str(repo)], env=os.environ, what=f"cache for {redact_uri(uri)}")
    return repo


_DEFAULT_CACHE: dict[str, Path] = {}


def _fetch_commit(uri: str, commit: str, repo: Path, env: Mapping[str, str], what: str) -> None:
    """Make ``commit`` present in ``repo``: a shallow fetch of exactly that commit, unless it is there."""
    if not HEX40.match(commit):
        raise ConfigError(f"{what}: a commit must be 40 hex digits, got {commit!r}")
    probe = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "-e", f"{commit}^{{commit}}"], env=dict(env), capture_output=True
    )
    if probe.returncode == 0:
        return
    _git(
        ["-C", str(repo), "fetch", "--quiet", "--depth=1", "--no-tags", "--no-write-fetch-head", "--", uri, commit],
        env=env,
        what=f"{what}: fetching commit {commit}",
    )
    got = _git(["-C", str(repo), "rev-parse", "--verify", f"{commit}^{{commit}}"], env=env, what=what)
    if got.decode().strip() != commit:
        raise RemoteError(f"{what}: fetched {got.decode().strip()} where commit {commit} was asked for")


def git_read_file(
    uri: str,
    commit: str,
    path: str,
    *,
    cache_dir: Path | None = None,
    private_key: str | None = None,
) -> bytes:
    """The bytes of ``path`` in the repository at ``commit`` (fetched shallow into a cache reused across calls)."""
    what = f"{redact_uri(uri)} at {commit}"
    repo = _repo_cache(uri, cache_dir)
    with git_env(private_key) as env:
        _fetch_commit(uri, commit.lower(), repo, env, what)
        clean = path.strip("/")
        proc = subprocess.run(
            ["git", "-C", str(repo), "cat-file", "blob", f"{commit.lower()}:{clean}"], env=env, capture_output=True
        )
    if proc.returncode != 0:
        raise RemoteError(f"{what}: no file {clean!r} in that commit")
    return proc.stdout


def git_archive(
    uri: str,
    commit: str,
    dest: Path,
    *,
    prefix: str = "",
    cache_dir: Path | None = None,
    private_key: str | None = None,
    log: Log = quiet,
) -> Downloaded:
    """The tree of ``commit`` as a .tar.gz at ``dest``, the same bytes for the same commit.

    ``git archive`` takes file times from the commit and compresses with git's own gzip (no name, no
    time), so the bytes depend only on the commit, the prefix and the git version. The fetched commit
    is checked to be the one asked for before archiving.
    """
    what = f"{redact_uri(uri)} at {commit}"
    commit = commit.lower()
    repo = _repo_cache(uri, cache_dir)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    with git_env(private_key) as env:
        _fetch_commit(uri, commit, repo, env, what)
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        try:
            _git(
                ["-C", str(repo), "archive", "--format=tar.gz", f"--prefix={prefix}", "-o", str(partial), commit],
                env=env,
                what=what,
            )
        except BaseException:
            remove_files(partial)
            raise
    digest, size = sha256_file(partial)
    os.replace(partial, dest)
    log(f"{dest.name}: {redact_uri(uri)} at {commit}, {human(size)}, sha256 {digest}")
    return Downloaded(dest, digest, size)
