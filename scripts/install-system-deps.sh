#!/usr/bin/env bash
# Install the Debian packages offline-bundle and its tests shell out to:
#   gnupg     -> gpg, gpgconf, gpg-agent (signing/encryption and the test keys)
#   tar       -> bundle archives
#   coreutils -> sha256sum & co. used by scripts
#   git       -> `pin`/`fetch` of git resources (ls-remote, archive at a commit)
#   docker-registry, skopeo -> the tests' local OCI registry and an independent client to check it
#   openssl   -> the tests' private CA (TLS SeaweedFS, the HTTPS file server)
# Idempotent and silent when everything is already there, so `make install`
# can call it every time; apt-get update runs only when something is missing.
set -euo pipefail

missing=()
need() { # need COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 || missing+=("$2")
}
need gpg gnupg
need gpgconf gnupg
need gpg-agent gnupg
need tar tar
need sha256sum coreutils
need git git
need docker-registry docker-registry
need skopeo skopeo
need openssl openssl
# `python3 -m venv` needs ensurepip, which Debian splits into python3-venv.
PY="${PY:-python3}"
if command -v "$PY" >/dev/null 2>&1 && ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi

# shellcheck source=scripts/lib/apt-install.sh
. "$(dirname "$0")/lib/apt-install.sh"
apt_install install-system-deps "${missing[@]}"
