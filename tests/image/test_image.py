"""The container image, used the way Concourse uses it (``make image-test``).

``make image-test`` builds the image and saves its two bootstrap forms, then runs this module with
IMAGE, IMAGE_CACHE, IMAGE_DIST, EXTRA_CA and VERSION set. Every asset runs INSIDE the image, in a
fresh container per step as Concourse does (``buildah run --isolation chroot --network host``), with
the request JSON on stdin, the build directory as its argument and the BUILD_* variables for in and
out, against the session's SeaweedFS on the host's loopback. Nothing of the host's venv is used:
PATH and everything else come from the image's own configuration.

Marked ``image`` and left out of ``make test`` (``-m "not image"``): it needs buildah, root and a
built image.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import botocore
import certifi
import pytest

from tests.support.concourse import BUILD_METADATA, parse_stdout, record_output
from tests.support.gpgkeys import GpgKeys
from tests.support.paths import REPO_ROOT
from tests.support.seaweed import SeaweedServer
from tests.support.sides import Sides

pytestmark = pytest.mark.image

IMAGE = os.environ.get("IMAGE", "")
IMAGE_CACHE = Path(os.environ.get("IMAGE_CACHE") or REPO_ROOT / ".cache" / "image")
IMAGE_DIST = Path(os.environ.get("IMAGE_DIST") or REPO_ROOT / "dist")
if not IMAGE_DIST.is_absolute():
    IMAGE_DIST = REPO_ROOT / IMAGE_DIST
EXTRA_CA = os.environ.get("EXTRA_CA", "")
MAX_IMAGE_MB = 300  # git (pin/fetch of git resources) brings perl: about 100 MB of the total
RUN_TIMEOUT = 300.0


@pytest.fixture(autouse=True)
def _needs_an_image() -> None:
    # A fixture, not a module-level skip: `make test` deselects these tests without a "skipped" line.
    if not IMAGE:
        pytest.skip("IMAGE is not set: run `make image-test`")
    if shutil.which("buildah") is None:
        pytest.skip("buildah is missing: run `make image-test`")


def _project_version() -> str:
    match = re.search(r'^version = "([^"]+)"$', (REPO_ROOT / "pyproject.toml").read_text(), re.M)
    assert match, "no version in pyproject.toml"
    return match.group(1)


VERSION = os.environ.get("VERSION") or _project_version()
BUILDAH = [
    "buildah",
    "--root",
    str(IMAGE_CACHE / "storage"),
    "--runroot",
    str(IMAGE_CACHE / "run"),
    "--storage-driver",
    "vfs",
]


def buildah(*args: str, stdin: bytes | None = None, timeout: float = RUN_TIMEOUT) -> str:
    proc = subprocess.run([*BUILDAH, *args], input=stdin, capture_output=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"buildah {' '.join(args[:3])} failed: {proc.stderr.decode(errors='replace')}"
    return proc.stdout.decode()


class Container:
    """One working container of the image (a fresh copy of its filesystem, as a Concourse step gets)."""

    def __init__(self, image: str = IMAGE) -> None:
        self.name = f"obtest-{uuid.uuid4().hex[:12]}"
        buildah("from", "--pull=never", "--quiet", "--name", self.name, image)

    def run(
        self,
        argv: list[str],
        stdin: bytes = b"",
        *,
        env: Mapping[str, str] | None = None,
        volumes: Mapping[Path, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside; stdout and stderr apart, as Concourse reads them. Exit code unchecked."""
        cmd = [*BUILDAH, "run", "--isolation", "chroot", "--network", "host", "--terminal=false"]
        for key, value in (env or {}).items():
            cmd += ["--env", f"{key}={value}"]
        for host, inside in (volumes or {}).items():
            cmd += ["--volume", f"{host}:{inside}"]
        cmd += [self.name, "--", *argv]
        proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=RUN_TIMEOUT, check=False)
        result = subprocess.CompletedProcess(
            args=argv,
            returncode=proc.returncode,
            stdout=proc.stdout.decode(errors="replace"),
            stderr=proc.stderr.decode(errors="replace"),
        )
        record_output(result.stdout, result.stderr)
        return result

    def mount(self) -> Path:
        return Path(buildah("mount", self.name).strip())

    def remove(self) -> None:
        subprocess.run([*BUILDAH, "rm", self.name], capture_output=True, timeout=RUN_TIMEOUT, check=False)


@pytest.fixture
def container() -> Iterator[Container]:
    ctr = Container()
    try:
        yield ctr
    finally:
        ctr.remove()


@pytest.fixture(scope="module")
def rootfs() -> Iterator[Path]:
    """The image's filesystem as built (a container nothing has run in), for reading only."""
    ctr = Container()
    try:
        yield ctr.mount()
    finally:
        ctr.remove()


@pytest.fixture(scope="module")
def image_config() -> dict[str, Any]:
    info = json.loads(buildah("inspect", "--type", "image", IMAGE))
    return info["OCIv1"]["config"]


def run_asset(
    script: str, request: Mapping[str, Any], build_dir: Path | None = None, inside: str = ""
) -> subprocess.CompletedProcess[str]:
    """/opt/resource/<script> in a fresh container, as Concourse runs it: request on stdin, the
    step's directory (a volume) as the only argument, BUILD_* for in and out only."""
    ctr = Container()
    try:
        env = dict(BUILD_METADATA) if script in ("in", "out") else {}
        volumes = {build_dir: inside} if build_dir is not None else {}
        args = [inside] if build_dir is not None else []
        return ctr.run([f"/opt/resource/{script}", *args], json.dumps(dict(request)).encode(), env=env, volumes=volumes)
    finally:
        ctr.remove()


def tree(root: Path) -> dict[str, tuple[str, int, str]]:
    """relative path -> (kind, permission bits, sha256 or link target) for everything under root."""
    result: dict[str, tuple[str, int, str]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        st = path.lstat()
        if path.is_symlink():
            result[rel] = ("link", 0, os.readlink(path))
        elif path.is_dir():
            result[rel] = ("dir", st.st_mode & 0o7777, "")
        else:
            result[rel] = ("file", st.st_mode & 0o7777, hashlib.sha256(path.read_bytes()).hexdigest())
    return result


# -- the round trip ---------------------------------------------------------------------------------


def test_put_check_get_round_trip_inside_the_image(
    seaweed: SeaweedServer, bucket: str, gpg_keys: GpgKeys, tmp_path: Path
) -> None:
    put_dir = tmp_path / "put"
    artifacts = put_dir / "artifacts"
    (artifacts / "nested" / "deeper").mkdir(parents=True)
    (artifacts / "readme.txt").write_text("carried by the image\n")
    (artifacts / "nested" / "deeper" / "tool.sh").write_text("#!/bin/sh\necho ok\n")
    (artifacts / "nested" / "deeper" / "tool.sh").chmod(0o755)
    (artifacts / "nested" / ".hidden").write_bytes(b"dot file")
    (artifacts / "link-to-readme").symlink_to("readme.txt")
    # Larger than one 8 MiB multipart part: a multipart upload straight to _blobs/<id>, inside too.
    (artifacts / "big.bin").write_bytes(os.urandom(9 * 1024 * 1024 + 123))
    (put_dir / "pipelines").mkdir()
    (put_dir / "pipelines" / "install.yml").write_text("jobs: []\n")
    (put_dir / "version").mkdir()
    (put_dir / "version" / "number").write_text("1.2.3\n")

    sides = Sides.create(seaweed, bucket, gpg_keys, tmp_path)
    put_source, get_source = sides.put_source, sides.get_source

    # put: /opt/resource/out /tmp/build/put
    out = run_asset(
        "out",
        {
            "source": put_source,
            "params": {
                "parts": [
                    {"name": "artifacts", "path": "artifacts"},
                    {"name": "pipelines", "path": "pipelines", "destination": "ci/pipelines/"},
                ],
                "version_file": "version/number",
            },
        },
        put_dir,
        "/tmp/build/put",
    )
    answer = parse_stdout(out)
    assert answer["version"] == {"version": "1.2.3"}
    metadata = {m["name"]: m["value"] for m in answer["metadata"]}
    assert metadata["signer"] == gpg_keys.signer.fingerprint
    assert "publish-bundle" in metadata["created_by"], metadata  # from BUILD_JOB_NAME, set as Concourse does

    # check: /opt/resource/check, no argument, no BUILD_* variables
    check = run_asset("check", {"source": get_source, "version": None})
    assert parse_stdout(check) == [{"version": "1.2.3"}]

    # get: /opt/resource/in /tmp/build/get
    get_dir = tmp_path / "get"
    get_dir.mkdir()
    got = run_asset(
        "in", {"source": get_source, "version": {"version": "1.2.3"}, "params": {}}, get_dir, "/tmp/build/get"
    )
    answer = parse_stdout(got)
    assert answer["version"] == {"version": "1.2.3"}

    assert tree(get_dir / "artifacts") == tree(artifacts)
    assert tree(get_dir / "pipelines") == tree(put_dir / "pipelines")
    assert (get_dir / "version").read_text().strip() == "1.2.3"
    sums = subprocess.run(
        ["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=get_dir, capture_output=True, text=True, check=False
    )
    assert sums.returncode == 0, sums.stdout + sums.stderr
    # The commit object re-verifies with the image's own gpg, as an operator would by hand.
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "signer.asc").write_text(gpg_keys.signer.public_armored)
    ctr = Container()
    try:
        verify = ctr.run(
            [
                "sh",
                "-c",
                "export GNUPGHOME=$(mktemp -d) && gpg --batch --quiet --import /tmp/keys/signer.asc"
                " && gpg --batch --verify /tmp/get/manifest.json.asc",
            ],
            volumes={get_dir: "/tmp/get", keys: "/tmp/keys"},
        )
        assert verify.returncode == 0, verify.stderr
        assert "Good signature" in verify.stderr

        # The CLI from the same image, configured by OFFLINE_BUNDLE_* variables as a `fly execute` task.
        cli = ctr.run(
            ["offline-bundle", "verify", "--version", "1.2.3"],
            env={
                "OFFLINE_BUNDLE_BUCKET": bucket,
                "OFFLINE_BUNDLE_NAME": "demo",
                "OFFLINE_BUNDLE_ENDPOINT": seaweed.endpoint,
                "OFFLINE_BUNDLE_ACCESS_KEY_ID": seaweed.ro_access_key,
                "OFFLINE_BUNDLE_SECRET_ACCESS_KEY": seaweed.ro_secret_key,
                "OFFLINE_BUNDLE_TRUSTED_PUBLIC_KEYS": gpg_keys.signer.public_armored,
                "OFFLINE_BUNDLE_DECRYPTION_PRIVATE_KEY": gpg_keys.recipient.secret_armored,
            },
        )
        assert cli.returncode == 0, cli.stdout + cli.stderr
    finally:
        ctr.remove()


# -- what is in the image -------------------------------------------------------------------------------


def test_cli_help_and_version_inside(container: Container) -> None:
    help_ = container.run(["offline-bundle", "--help"])
    assert help_.returncode == 0, help_.stderr
    for command in ("pack", "verify", "unpack", "show", "keygen", "prune", "pin", "fetch", "publish-images"):
        assert command in help_.stdout
    version = container.run(["offline-bundle", "--version"])
    assert version.returncode == 0 and version.stdout.strip() == f"offline-bundle {VERSION}", version
    # pin/fetch of git resources shell out to git (and ssh for git@ URIs).
    for tool in (["git", "--version"], ["ssh", "-V"]):
        ran = container.run(tool)
        assert ran.returncode == 0, (tool, ran.stderr)


def test_runtime_tools_and_no_build_tools(rootfs: Path) -> None:
    for script in ("check", "in", "out"):
        path = rootfs / "opt" / "resource" / script
        assert path.is_file() and os.access(path, os.X_OK), path
        assert path.read_bytes() == (REPO_ROOT / "assets" / script).read_bytes()
    for tool in (
        "usr/bin/gpg",
        "usr/bin/gpg-agent",
        "usr/bin/gpgconf",
        "usr/bin/python3",
        "usr/bin/git",
        "usr/bin/ssh",
    ):
        assert (rootfs / tool).exists(), tool
    certs = rootfs / "etc" / "ssl" / "certs"
    assert (certs / "ca-certificates.crt").stat().st_size > 100_000
    assert len(list(certs.glob("*.pem"))) > 100
    # The venv's interpreter is Debian's (same path in the builder stage and here).
    assert os.readlink(rootfs / "opt" / "venv" / "bin" / "python") in ("python3", "/usr/bin/python3")
    # No build tools or caches were carried over from the builder stage.
    for absent in (
        "opt/venv/bin/pip",
        "opt/build-venv",
        "src",
        "tmp/wheels",
        "root/.cache/pip",
        "usr/bin/gcc",
        "usr/bin/cc",
        "usr/lib/python3/dist-packages/pip",
    ):
        assert not (rootfs / absent).exists(), absent
    assert not list((rootfs / "opt/venv/lib").glob("python3*/site-packages/pip")), "pip in /opt/venv"
    assert not [p for p in (rootfs / "var/lib/apt/lists").iterdir() if p.name not in ("partial", "lock", "auxfiles")]


def test_config_labels_and_size(image_config: dict[str, Any]) -> None:
    env = dict(item.split("=", 1) for item in image_config["Env"])
    assert env["PATH"].split(":")[0] == "/opt/venv/bin"
    assert env["LANG"] == "C.UTF-8"
    assert image_config.get("User", "") in ("", "root", "0")
    labels = image_config["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.source"]
    # Nothing about the build secret leaks into the configuration.
    assert "extra_ca" not in json.dumps(image_config) and "PIP_CERT" not in json.dumps(image_config)

    size = buildah("images", "--format", "{{.Size}}", IMAGE).splitlines()[0]
    number, unit = size.split()
    megabytes = float(number) * {"kB": 0.001, "MB": 1, "GB": 1000}[unit]
    assert megabytes < MAX_IMAGE_MB, f"{IMAGE} is {size}"


def _pem_certificates(text: str) -> list[bytes]:
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", text, re.S)
    return [base64.b64decode("".join(b.split())) for b in blocks]


def test_extra_ca_is_not_in_the_image(rootfs: Path) -> None:
    """The certificates EXTRA_CA holds beyond the public CAs (a proxy's CA) appear nowhere in the
    image: not as a file, not inside a bundle, neither as PEM nor as DER."""
    if not EXTRA_CA or not Path(EXTRA_CA).is_file():
        pytest.skip("the image was built without EXTRA_CA")
    assert not (rootfs / "run" / "secrets" / "extra_ca").exists()
    assert not (rootfs / "etc" / "apt" / "apt.conf.d" / "99extra-ca").exists()
    # Public CAs may be anywhere (botocore ships a bundle of its own): only certificates that no
    # public CA set knows count, i.e. the proxy's. Debian's set differs between point releases, so
    # the image's and this machine's are both asked, and the bundles of the packages the image holds
    # (from the test venv: the same pinned versions, and not read from the image under test).
    public: set[bytes] = set()
    for bundle in (Path(certifi.where()), Path(botocore.__file__).parent / "cacert.pem"):
        public.update(_pem_certificates(bundle.read_text()))
    for share in (rootfs / "usr" / "share" / "ca-certificates" / "mozilla", Path("/usr/share/ca-certificates/mozilla")):
        for crt in share.glob("*.crt"):
            public.update(_pem_certificates(crt.read_text(errors="replace")))
    extra = [der for der in _pem_certificates(Path(EXTRA_CA).read_text()) if der not in public]
    if not extra:
        pytest.skip(f"{EXTRA_CA} holds only public CA certificates")
    # Needles: the DER bytes and a 64-character PEM line from the middle of each certificate.
    needles: list[bytes] = []
    for der in extra:
        needles.append(der[-200:])
        lines = re.findall(".{64}", base64.b64encode(der).decode())
        needles.append(lines[len(lines) // 2].encode())
    found = []
    for dirpath, dirnames, filenames in os.walk(rootfs):
        dirnames[:] = [d for d in dirnames if not (dirpath == str(rootfs) and d in ("proc", "sys", "dev"))]
        for name in filenames:
            path = Path(dirpath, name)
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
            if any(n in data for n in needles):
                found.append(str(path.relative_to(rootfs)))
    assert not found, f"the extra CA's certificates are in the image: {found}"


# -- the bootstrap artifacts (make image-save) ---------------------------------------------------------


def test_oci_archive(image_config: dict[str, Any]) -> None:
    archive = IMAGE_DIST / f"offline-bundle-{VERSION}.oci.tar"
    assert archive.is_file(), "run make image-save"
    with tarfile.open(archive) as oci:
        assert json.load(oci.extractfile("oci-layout"))["imageLayoutVersion"] == "1.0.0"  # type: ignore[arg-type]
        index = json.load(oci.extractfile("index.json"))  # type: ignore[arg-type]
        (entry,) = index["manifests"]
        assert entry["annotations"]["org.opencontainers.image.ref.name"] == f"offline-bundle:{VERSION}"

        def blob(digest: str) -> bytes:
            algo, hexdigest = digest.split(":")
            data = oci.extractfile(f"blobs/{algo}/{hexdigest}").read()  # type: ignore[union-attr]
            assert hashlib.sha256(data).hexdigest() == hexdigest
            return data

        manifest = json.loads(blob(entry["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))["config"]
        assert config["Env"] == image_config["Env"]
        assert config["Labels"]["org.opencontainers.image.version"] == VERSION
        names: set[str] = set()
        for layer in manifest["layers"]:
            algo, hexdigest = layer["digest"].split(":")
            with oci.extractfile(f"blobs/{algo}/{hexdigest}") as raw, tarfile.open(fileobj=raw, mode="r|*") as tf:  # type: ignore[union-attr]
                names.update(m.name.lstrip("./") for m in tf)
    for path in ("opt/resource/check", "opt/resource/in", "opt/resource/out", "opt/venv/bin/offline-bundle"):
        assert path in names, path
    sums = subprocess.run(
        ["sha256sum", "-c", f"offline-bundle-{VERSION}.sha256"],
        cwd=IMAGE_DIST,
        capture_output=True,
        text=True,
        check=False,
    )
    assert sums.returncode == 0, sums.stdout + sums.stderr


def test_rootfs_tarball_runs_as_a_task_image(tmp_path: Path) -> None:
    """rootfs/ + metadata.json, as an `s3` get with `unpack: true` hands it to a task's image: unpacked,
    given metadata.json's env, it runs the scripts and the CLI."""
    tarball = IMAGE_DIST / f"offline-bundle-{VERSION}-rootfs.tgz"
    assert tarball.is_file(), "run make image-save"
    with tarfile.open(tarball) as tf:
        members = {m.name: m for m in tf.getmembers()}
        metadata = json.load(tf.extractfile("metadata.json"))  # type: ignore[arg-type]
    assert set(metadata) == {"env", "user"}
    env = dict(item.split("=", 1) for item in metadata["env"])
    assert env["PATH"].startswith("/opt/venv/bin:"), metadata
    assert metadata["user"] in ("", "root")
    assert {n.split("/", 1)[0] for n in members} == {"rootfs", "metadata.json"}
    for script in ("check", "in", "out"):
        member = members[f"rootfs/opt/resource/{script}"]
        assert member.isfile() and member.mode & 0o111 and member.uid == 0, member
    python = members["rootfs/opt/venv/bin/python"]
    assert python.issym() and python.linkname in ("python3", "/usr/bin/python3"), python.linkname
    # Only member names got the rootfs/ prefix: symlink targets are as in the image.
    assert not [m.name for m in members.values() if m.issym() and m.linkname.startswith("rootfs")]

    # Concourse's way, reproduced: a scratch container, the rootfs unpacked into it, metadata's env.
    name = f"obtest-rootfs-{uuid.uuid4().hex[:12]}"
    buildah("from", "--quiet", "--name", name, "scratch")
    try:
        mnt = Path(buildah("mount", name).strip())
        subprocess.run(
            ["tar", "--numeric-owner", "-xzf", str(tarball), "-C", str(mnt), "--strip-components=1", "rootfs"],
            check=True,
            timeout=RUN_TIMEOUT,
        )
        cmd = [*BUILDAH, "run", "--isolation", "chroot", "--network", "host", "--terminal=false"]
        for item in metadata["env"]:
            cmd += ["--env", item]
        script = "command -v python3 && offline-bundle --version && test -x /opt/resource/in"
        proc = subprocess.run(
            [*cmd, name, "--", "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines() == ["/opt/venv/bin/python3", f"offline-bundle {VERSION}"]
    finally:
        subprocess.run([*BUILDAH, "rm", name], capture_output=True, check=False)
