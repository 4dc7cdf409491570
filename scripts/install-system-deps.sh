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

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

# De-duplicate while keeping order (gnupg may be listed three times).
pkgs=$(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++' | tr '\n' ' ')
pkgs="${pkgs% }"

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && { sudo -n true >/dev/null 2>&1 || [ -t 0 ]; }; then
    # Passwordless sudo, or a terminal where sudo can ask for the password.
    SUDO=(sudo)
else
    echo "install-system-deps: missing Debian packages: ${pkgs}" >&2
    echo "install-system-deps: not root and no passwordless sudo; run as root:" >&2
    echo "    apt-get update && apt-get install -y --no-install-recommends ${pkgs}" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: apt-get not found; install these packages by hand: ${pkgs}" >&2
    exit 1
fi

echo "install-system-deps: installing ${pkgs}" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
# shellcheck disable=SC2086 # word splitting of $pkgs is intended
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
