# shellcheck shell=bash
# apt_install WHO PACKAGE...: install Debian packages with apt-get, as root or through sudo.
# Sourced by install-system-deps.sh and install-image-deps.sh, which decide what is missing; this
# is the part they share: de-duplicate the list, find root (passwordless sudo, or a terminal where
# sudo can ask), say exactly what to run when neither is there, apt-get update only when needed.
# No recommends: the callers list what they need (buildah's recommends, for example, are for other
# storage drivers and isolations).
apt_install() {
    local who="$1"
    shift
    [ "$#" -gt 0 ] || return 0
    local pkgs
    # De-duplicate while keeping order (gnupg may be listed three times).
    pkgs=$(printf '%s\n' "$@" | awk '!seen[$0]++' | tr '\n' ' ')
    pkgs="${pkgs% }"

    local -a sudo_cmd=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && { sudo -n true >/dev/null 2>&1 || [ -t 0 ]; }; then
            sudo_cmd=(sudo)
        else
            echo "${who}: missing Debian packages: ${pkgs}" >&2
            echo "${who}: not root and no passwordless sudo; run as root:" >&2
            echo "    apt-get update && apt-get install -y --no-install-recommends ${pkgs}" >&2
            return 1
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "${who}: apt-get not found; install these packages by hand: ${pkgs}" >&2
        return 1
    fi

    echo "${who}: installing ${pkgs}" >&2
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -qq
    # shellcheck disable=SC2086 # word splitting of $pkgs is intended
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
}
