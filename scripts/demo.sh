#!/usr/bin/env bash
# End-to-end demo of offline-bundle, run by `make demo` (after `make install`).
#
# One local SeaweedFS plays both blobstores: bucket "online" is the connected side, bucket
# "airgapped" the air-gapped side. The demo
#   1. makes a signing key (connected side) and a decryption key (air-gapped side) with the CLI,
#   2. writes each side's `source` as YAML,
#   3. runs assets/out exactly as Concourse would (request JSON on stdin, build dir as $1),
#   4. carries the bundle's objects from one bucket to the other (the "gap") with a plain copy,
#   5. runs assets/check and assets/in on the air-gapped side, re-checks SHA256SUMS by hand
#      and shows the signed manifest with `offline-bundle show`.
# Everything lives in .demo/ (wiped at the start); nothing is left running at the end.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)
DEMO="$REPO/.demo"
VENV_BIN="$REPO/.venv/bin"
PY="$VENV_BIN/python"
WEED="$VENV_BIN/weed"
OB="$VENV_BIN/offline-bundle"
BUNDLE=pcf-bundle
VERSION=1.0.0

for tool in "$PY" "$WEED" "$OB"; do
    if [ ! -x "$tool" ]; then
        echo "demo: $tool is missing; run \`make install\` first (or use \`make demo\`)" >&2
        exit 1
    fi
done

# Bold headings on a terminal, plain text in logs; elapsed seconds so slow steps stand out.
if [ -t 1 ]; then BOLD=$'\033[1m' PLAIN=$'\033[0m'; else BOLD='' PLAIN=''; fi
step() { printf '\n%s==> [%3ss] %s%s\n' "$BOLD" "$SECONDS" "$*" "$PLAIN"; }

# ------------------------------------------------------------------------------ cleanup on exit
WEED_PID=""
WEED_LOG="$DEMO/weed.log"
declare -A PORT=()

stop_weed() {
    [ -n "$WEED_PID" ] || return 0
    if kill -0 "$WEED_PID" 2>/dev/null; then
        kill -TERM "$WEED_PID" 2>/dev/null || true
        # weed shuts down cleanly in a couple of seconds; do not hang forever if it does not.
        for _ in $(seq 1 100); do
            kill -0 "$WEED_PID" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$WEED_PID" 2>/dev/null; then
            echo "weed did not stop in 20s; killing it" >&2
            kill -KILL "$WEED_PID" 2>/dev/null || true
        fi
    fi
    wait "$WEED_PID" 2>/dev/null || true
    WEED_PID=""
    # weed leaves unix sockets named after its ports in /tmp: remove ours.
    for p in "${PORT[@]}"; do
        rm -f /tmp/seaweedfs-*-"$p".sock
    done
}

on_exit() {
    local rc=$?
    stop_weed
    if [ "$rc" -ne 0 ]; then
        echo >&2
        echo "demo FAILED (exit $rc)." >&2
        if [ -f "$WEED_LOG" ]; then
            echo "SeaweedFS log: $WEED_LOG (last lines below)" >&2
            tail -n 15 "$WEED_LOG" >&2 || true
        fi
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------------------ fresh work dir
step "Work dir $DEMO (wiped)"
rm -rf "$DEMO"
mkdir -p "$DEMO/seaweed" "$DEMO/connected" "$DEMO/airgapped" "$DEMO/build"
chmod 700 "$DEMO/connected" "$DEMO/airgapped"

# ------------------------------------------------------------------------------ SeaweedFS
# Random S3 credentials for one read-write identity.
ACCESS_KEY=$("$PY" -c 'import secrets; print("DEMO" + secrets.token_hex(8).upper())')
SECRET_KEY=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(30))')
ACCESS_KEY="$ACCESS_KEY" SECRET_KEY="$SECRET_KEY" "$PY" - "$DEMO/identities.json" <<'EOF'
import json, os, sys
doc = {"identities": [{
    "name": "demo",
    "credentials": [{"accessKey": os.environ["ACCESS_KEY"], "secretKey": os.environ["SECRET_KEY"]}],
    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
}]}
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as f:
    json.dump(doc, f, indent=2)
EOF

# Free loopback ports for every listener. Each probe socket stays bound until all are chosen,
# so the ports differ from each other. The admin pair is chosen as (p, p + 10000): weed 4.48's
# built-in worker dials the admin gRPC port at admin.port + 10000 whatever -admin.port.grpc says.
pick_ports() {
    "$PY" - <<'EOF'
import socket
held = []
def bind(port=0):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    held.append(s)
    return s.getsockname()[1]
names = ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
         "filer.port.grpc", "s3.port", "s3.port.grpc", "webdav.port"]
ports = {n: bind() for n in names}
for _ in range(200):
    grpc = bind()
    if grpc - 10000 > 1024 and (http := bind(grpc - 10000)) is not None:
        ports["admin.port"], ports["admin.port.grpc"] = http, grpc
        break
else:
    raise SystemExit("no free admin port pair on 127.0.0.1")
for n, p in ports.items():
    print(n, p)
EOF
}

start_weed() {
    PORT=()
    local name port
    while read -r name port; do PORT[$name]=$port; done < <(pick_ports)
    # shellcheck disable=SC2054 # the comma in -bucket=online,airgapped is part of one argument
    local args=(
        -logtostderr mini
        -dir="$DEMO/seaweed" -ip=127.0.0.1 -ip.bind=127.0.0.1
        -s3.config="$DEMO/identities.json"
        -master.telemetry=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0
        -bucket=online,airgapped
        # WebDAV's chunk cache defaults to a random folder in /tmp: keep it in .demo/ too.
        -webdav.cacheDir="$DEMO/seaweed/webdav-cache"
    )
    for name in "${!PORT[@]}"; do args+=("-$name=${PORT[$name]}"); done
    echo "\$ weed ${args[*]}" >>"$WEED_LOG"
    "$WEED" "${args[@]}" </dev/null >>"$WEED_LOG" 2>&1 &
    WEED_PID=$!
    ENDPOINT="http://127.0.0.1:${PORT[s3.port]}"
}

# Ready means: S3 answers, the identity is accepted and both buckets exist.
# Exit 0 ready, 3 weed died (e.g. a port was taken meanwhile), 1 timeout.
wait_ready() {
    ENDPOINT="$ENDPOINT" ACCESS_KEY="$ACCESS_KEY" SECRET_KEY="$SECRET_KEY" WEED_PID="$WEED_PID" "$PY" - <<'EOF'
import os, sys, time
import boto3
from botocore.config import Config

pid = int(os.environ["WEED_PID"])
s3 = boto3.client(
    "s3", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
    aws_access_key_id=os.environ["ACCESS_KEY"], aws_secret_access_key=os.environ["SECRET_KEY"],
    config=Config(s3={"addressing_style": "path"}, connect_timeout=1, read_timeout=2,
                  retries={"max_attempts": 1}, request_checksum_calculation="when_required"),
)
deadline = time.monotonic() + 45
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(3)
    try:
        names = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if {"online", "airgapped"} <= names:
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.2)
sys.exit(1)
EOF
}

step "Start one local SeaweedFS (buckets: online = connected side, airgapped = air-gapped side)"
for attempt in 1 2 3; do
    start_weed
    rc=0
    wait_ready || rc=$?
    [ "$rc" -eq 0 ] && break
    stop_weed
    if [ "$rc" -ne 3 ] || [ "$attempt" -eq 3 ]; then
        echo "demo: SeaweedFS did not become ready (see $WEED_LOG)" >&2
        exit 1
    fi
    echo "weed exited during startup (a port was probably taken); retrying with new ports" >&2
done
echo "S3 endpoint $ENDPOINT (weed pid $WEED_PID, log $WEED_LOG)"

# ------------------------------------------------------------------------------ keys
step "Keys: a signing key on the connected side, a decryption key on the air-gapped side"
# keygen writes sign.pub.asc beside sign.key (and prints it on stdout); "fingerprint: <FPR>" goes to stderr.
"$OB" keygen --role sign --out "$DEMO/connected/sign.key" 2>"$DEMO/connected/keygen.log" >/dev/null
"$OB" keygen --role decrypt --out "$DEMO/airgapped/decrypt.key" 2>"$DEMO/airgapped/keygen.log" >/dev/null
SIGN_FPR=$(sed -n 's/^fingerprint: //p' "$DEMO/connected/keygen.log")
DECRYPT_FPR=$(sed -n 's/^fingerprint: //p' "$DEMO/airgapped/keygen.log")
echo "signing key    $SIGN_FPR  (secret: .demo/connected/sign.key, mode $(stat -c %a "$DEMO/connected/sign.key"))"
echo "decryption key $DECRYPT_FPR  (secret: .demo/airgapped/decrypt.key, mode $(stat -c %a "$DEMO/airgapped/decrypt.key"))"

# ------------------------------------------------------------------------------ source configs
step "Source configs: .demo/connected/connected.yml and .demo/airgapped/airgapped.yml"
ENDPOINT="$ENDPOINT" ACCESS_KEY="$ACCESS_KEY" SECRET_KEY="$SECRET_KEY" BUNDLE="$BUNDLE" DEMO="$DEMO" "$PY" - <<'EOF'
import os
import yaml

env, demo = os.environ, os.environ["DEMO"]

def read(path):
    with open(os.path.join(demo, path), encoding="utf-8") as f:
        return f.read()

class Literal(str):
    pass

# Armoured keys as YAML block literals (|), the way one pastes them into credentials.
yaml.SafeDumper.add_representer(Literal, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|"))

common = {
    "name": env["BUNDLE"],
    "endpoint": env["ENDPOINT"],
    "access_key_id": env["ACCESS_KEY"],
    "secret_access_key": env["SECRET_KEY"],
}
sides = {
    "connected/connected.yml": {
        "bucket": "online", **common,
        "recipient_public_keys": [Literal(read("airgapped/decrypt.pub.asc"))],
        "signing_private_key": Literal(read("connected/sign.key")),
    },
    "airgapped/airgapped.yml": {
        "bucket": "airgapped", **common,
        "trusted_public_keys": [Literal(read("connected/sign.pub.asc"))],
        "decryption_private_key": Literal(read("airgapped/decrypt.key")),
    },
}
for path, source in sides.items():
    fd = os.open(os.path.join(demo, path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(source, f, sort_keys=False, width=1000)
    print(f"{path}: {', '.join(source)}")
EOF
echo "(secret values are in the files only; they are not printed)"

# ------------------------------------------------------------------------------ sample build
step "Sample build folder .demo/build (what a Concourse build would hand to the put)"
B="$DEMO/build"
mkdir -p "$B/ops-manager" "$B/stemcells" "$B/pipelines/tasks/configure-director" \
    "$B/czero-rootfs/rootfs/bin" "$B/czero-rootfs/rootfs/etc" "$B/czero-rootfs/rootfs/usr/bin" \
    "$B/czero-rootfs/rootfs/tmp"
head -c 5242880 /dev/urandom >"$B/ops-manager/ops-manager-3.0.1.ova"
cat >"$B/ops-manager/metadata.json" <<'EOF'
{"product": "ops-manager", "release": {"version": "3.0.1"}, "file": "ops-manager-3.0.1.ova"}
EOF
head -c 1048576 /dev/urandom >"$B/stemcells/bosh-stemcell-1.423-vsphere-esxi-ubuntu-jammy-go_agent.tgz"
cat >"$B/pipelines/install-pcf.yml" <<'EOF'
resources:
- name: ops-manager
  type: s3
  source: {bucket: airgapped-products, regexp: ops-manager/ops-manager-(.*).ova}
jobs:
- name: deploy-opsman
  plan:
  - get: ops-manager
  - task: configure-director
    file: pipelines/tasks/configure-director/task.yml
EOF
cat >"$B/pipelines/tasks/configure-director/task.yml" <<'EOF'
platform: linux
inputs: [{name: pipelines}]
run: {path: pipelines/tasks/configure-director/task.sh}
EOF
cat >"$B/pipelines/tasks/configure-director/task.sh" <<'EOF'
#!/bin/sh
echo "configuring the BOSH director"
EOF
chmod 755 "$B/pipelines/tasks/configure-director/task.sh"
printf '#!/bin/sh\necho "I am a pretend busybox"\n' >"$B/czero-rootfs/rootfs/bin/busybox"
chmod 755 "$B/czero-rootfs/rootfs/bin/busybox"
ln -s busybox "$B/czero-rootfs/rootfs/bin/sh"
ln -s ../../bin/busybox "$B/czero-rootfs/rootfs/usr/bin/env"
printf 'NAME="demo rootfs"\nVERSION_ID=1\n' >"$B/czero-rootfs/rootfs/etc/os-release"
printf '{"repository": "example/rootfs", "digest": "sha256:%064d"}\n' 0 >"$B/czero-rootfs/metadata.json"
(cd "$B" && find . -mindepth 1 | sort | sed 's|^\./|  |')

# ------------------------------------------------------------------------------ put
step "Connected side: put (assets/out $B), request JSON on stdin as Concourse sends it"
DEMO="$DEMO" BUNDLE="$BUNDLE" VERSION="$VERSION" "$PY" - >"$DEMO/out-request.json" <<'EOF'
import json, os, yaml
with open(os.path.join(os.environ["DEMO"], "connected/connected.yml"), encoding="utf-8") as f:
    source = yaml.safe_load(f)
params = {
    "parts": [
        {"name": "ops-manager", "path": "ops-manager"},
        {"name": "stemcells", "path": "stemcells/*.tgz"},
        {"name": "pipelines", "path": "pipelines"},
        {"name": "czero-rootfs", "path": "czero-rootfs"},
    ],
    "version": os.environ["VERSION"],
}
print(json.dumps({"source": source, "params": params}))
EOF
chmod 600 "$DEMO/out-request.json"
echo "params: $("$PY" -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["params"]))' <"$DEMO/out-request.json")"
echo "--- stderr of assets/out:"
env PATH="$VENV_BIN:$PATH" \
    BUILD_ID=101 BUILD_NAME=1 BUILD_JOB_NAME=create-bundle BUILD_PIPELINE_NAME=create-offline-bundle \
    BUILD_TEAM_NAME=main ATC_EXTERNAL_URL=https://concourse.connected.example \
    "$REPO/assets/out" "$B" <"$DEMO/out-request.json" >"$DEMO/out-response.json"
echo "--- stdout of assets/out:"
"$PY" -m json.tool "$DEMO/out-response.json"

# ------------------------------------------------------------------------------ carry
step "Carry it across the gap: copy every object under $BUNDLE/ from bucket online to bucket airgapped"
echo "(a plain copy, payloads first and commit objects last; \`offline-bundle export\`/\`import\` and \`mirror\` do it with verification and resume: docs/carrying.md)"
ENDPOINT="$ENDPOINT" ACCESS_KEY="$ACCESS_KEY" SECRET_KEY="$SECRET_KEY" BUNDLE="$BUNDLE" "$PY" - <<'EOF'
import os
import boto3
from botocore.config import Config

env = os.environ
s3 = boto3.client(
    "s3", endpoint_url=env["ENDPOINT"], region_name="us-east-1",
    aws_access_key_id=env["ACCESS_KEY"], aws_secret_access_key=env["SECRET_KEY"],
    config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                  response_checksum_validation="when_required"),
)
keys = [o for page in s3.get_paginator("list_objects_v2").paginate(Bucket="online", Prefix=env["BUNDLE"] + "/")
        for o in page.get("Contents", [])]
# Payloads first, commit objects last: a version exists on the far side only once its commit
# object does, so a half-carried bundle is never seen as a version.
keys.sort(key=lambda o: (o["Key"].endswith("/manifest.json.asc"), o["Key"]))
for o in keys:
    body = s3.get_object(Bucket="online", Key=o["Key"])["Body"]
    s3.upload_fileobj(body, "airgapped", o["Key"])
    print(f"  carried {o['Key']}  ({o['Size']} bytes)")
print(f"{len(keys)} object(s) carried")
EOF

# ------------------------------------------------------------------------------ air-gapped side
step "Air-gapped side: check (assets/check)"
DEMO="$DEMO" "$PY" - >"$DEMO/check-request.json" <<'EOF'
import json, os, yaml
with open(os.path.join(os.environ["DEMO"], "airgapped/airgapped.yml"), encoding="utf-8") as f:
    print(json.dumps({"source": yaml.safe_load(f), "version": None}))
EOF
chmod 600 "$DEMO/check-request.json"
env PATH="$VENV_BIN:$PATH" "$REPO/assets/check" <"$DEMO/check-request.json" >"$DEMO/check-response.json"
"$PY" -m json.tool "$DEMO/check-response.json"

step "Air-gapped side: get (assets/in .demo/airgapped/exploded)"
DEST="$DEMO/airgapped/exploded"
DEMO="$DEMO" VERSION="$VERSION" "$PY" - >"$DEMO/in-request.json" <<'EOF'
import json, os, yaml
with open(os.path.join(os.environ["DEMO"], "airgapped/airgapped.yml"), encoding="utf-8") as f:
    source = yaml.safe_load(f)
print(json.dumps({"source": source, "version": {"version": os.environ["VERSION"]}, "params": {}}))
EOF
chmod 600 "$DEMO/in-request.json"
echo "--- stderr of assets/in:"
env PATH="$VENV_BIN:$PATH" \
    BUILD_ID=202 BUILD_NAME=1 BUILD_JOB_NAME=unpack-bundle BUILD_PIPELINE_NAME=unpack-offline-bundle \
    BUILD_TEAM_NAME=main ATC_EXTERNAL_URL=https://concourse.airgapped.example \
    "$REPO/assets/in" "$DEST" <"$DEMO/in-request.json" >"$DEMO/in-response.json"
echo "--- stdout of assets/in:"
"$PY" -m json.tool "$DEMO/in-response.json"

step "The exploded tree"
if command -v tree >/dev/null 2>&1; then
    tree -a --noreport "$DEST"
else
    (cd "$DEST" && find . -mindepth 1 \( -type l -printf '%M  %P -> %l\n' \) -o -printf '%M  %P\n' | sort -k2)
fi

step "Re-check every file by hand: sha256sum --strict -c SHA256SUMS"
(cd "$DEST" && sha256sum --strict -c SHA256SUMS)
NFILES=$(wc -l <"$DEST/SHA256SUMS")

step "offline-bundle show --config .demo/airgapped/airgapped.yml (the signed manifest, nothing decrypted)"
"$OB" show --config "$DEMO/airgapped/airgapped.yml"

# ------------------------------------------------------------------------------ summary
step "Summary"
cat <<EOF
bundle $BUNDLE $VERSION: packed, signed by $SIGN_FPR,
encrypted to $DECRYPT_FPR, uploaded to bucket online, carried to bucket airgapped,
verified and exploded into .demo/airgapped/exploded ($NFILES files re-checked with sha256sum).

  keys       .demo/connected/sign.key, .demo/airgapped/decrypt.key (mode 0600)
  configs    .demo/connected/connected.yml, .demo/airgapped/airgapped.yml
  responses  .demo/out-response.json, .demo/check-response.json, .demo/in-response.json
  S3 data    .demo/seaweed (log: .demo/weed.log)

SeaweedFS has been stopped; nothing is left running. \`make demo\` starts over from scratch.
Done in ${SECONDS}s.
EOF
