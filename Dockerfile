# syntax=docker/dockerfile:1
# The offline-bundle image: the Concourse resource type (/opt/resource/check, in, out) and the
# offline-bundle CLI on PATH, so the same image also runs `fly execute` tasks.
#
#   make image          buildah, no Docker engine (see docs/image.md)
#   docker build --secret id=extra_ca,src=proxy-ca.pem -t offline-bundle .      works as well
#
# Optional build secret `extra_ca`: a PEM bundle for networks whose proxy intercepts TLS. pip trusts
# it in addition to the public CAs; apt uses it as its CA file for https mirrors (Debian's default
# mirrors are http, with signed indexes). It is mounted only into the RUN steps that download,
# never copied into a layer, and is not in the image.

# debian:bookworm-20260918-slim, pinned by the digest of its multi-platform image index.
# `make image` swaps in localhost/debian:bookworm-slim (debootstrap) where no registry is reachable.
ARG BASE_IMAGE=docker.io/library/debian@sha256:3783cc01769c7b2b1b83a5c5ad96c815348e28ed7da68e2e3687004faa906251

# ---- builder: the package and its pinned dependencies in /opt/venv ------------------------------
FROM ${BASE_IMAGE} AS builder

# Debian's packages are not pinned to versions: the mirror drops superseded ones (security updates),
# so a pin would break the build within weeks; the base digest fixes everything else.
# hadolint ignore=DL3008
RUN --mount=type=secret,id=extra_ca \
    set -eu; \
    export DEBIAN_FRONTEND=noninteractive; \
    if [ -s /run/secrets/extra_ca ]; then \
        echo 'Acquire::https::CAInfo "/run/secrets/extra_ca";' >/etc/apt/apt.conf.d/99extra-ca; \
    fi; \
    apt-get update -qq; \
    apt-get install -y -qq --no-install-recommends ca-certificates python3 python3-venv >/dev/null; \
    rm -rf /var/lib/apt/lists/* /etc/apt/apt.conf.d/99extra-ca

# Dependencies first (exact versions and SHA-256 hashes, from `make image-lock`), so a change to the
# package's source rebuilds only the small layer below. /opt/venv gets no pip of its own: the
# build venv's pip installs into it (--python), and stays behind in this stage.
COPY image/requirements.txt image/build-requirements.txt /src/image/
RUN --mount=type=secret,id=extra_ca \
    set -eu; \
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore; \
    if [ -s /run/secrets/extra_ca ]; then \
        cat /etc/ssl/certs/ca-certificates.crt /run/secrets/extra_ca >/tmp/pip-ca.pem; \
        export PIP_CERT=/tmp/pip-ca.pem; \
    fi; \
    python3 -m venv /opt/build-venv; \
    /opt/build-venv/bin/pip install --no-cache-dir --quiet --require-hashes --no-deps \
        -r /src/image/build-requirements.txt; \
    python3 -m venv --without-pip /opt/venv; \
    /opt/build-venv/bin/pip --python /opt/venv/bin/python install --no-cache-dir --quiet --require-hashes \
        --no-deps -r /src/image/requirements.txt; \
    rm -f /tmp/pip-ca.pem

# The wheel of this repository, built offline with the pinned setuptools, then installed alone.
COPY pyproject.toml /src/
COPY resource/ /src/resource/
RUN set -eu; \
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore; \
    /opt/build-venv/bin/pip wheel --no-cache-dir --quiet --no-index --no-build-isolation --no-deps \
        --wheel-dir /tmp/wheels /src; \
    /opt/build-venv/bin/pip --python /opt/venv/bin/python install --no-cache-dir --quiet --no-index \
        --no-deps /tmp/wheels/offline_bundle-*.whl; \
    /opt/build-venv/bin/pip --python /opt/venv/bin/python check; \
    /opt/venv/bin/offline-bundle --version

# ---- the image ------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}

# Runtime only: the interpreter the venv links to, gpg (+ gpg-agent, gpgconf) for python-gnupg, git
# and ssh for `pin`/`fetch` of git resources (the create pipeline runs them in this image), and the
# public CAs (a source's ca_bundle adds to them). No pip, compiler or venv tooling.
# hadolint ignore=DL3008
RUN --mount=type=secret,id=extra_ca \
    set -eu; \
    export DEBIAN_FRONTEND=noninteractive; \
    if [ -s /run/secrets/extra_ca ]; then \
        echo 'Acquire::https::CAInfo "/run/secrets/extra_ca";' >/etc/apt/apt.conf.d/99extra-ca; \
    fi; \
    apt-get update -qq; \
    apt-get install -y -qq --no-install-recommends ca-certificates git gnupg openssh-client python3 >/dev/null; \
    rm -rf /var/lib/apt/lists/* /etc/apt/apt.conf.d/99extra-ca /var/cache/debconf/*-old /var/log/apt/* \
        /var/log/dpkg.log

COPY --from=builder /opt/venv /opt/venv
# The three scripts Concourse execs; they run `python3`, which PATH resolves to the venv's.
COPY assets/check assets/in assets/out /opt/resource/

ENV PATH=/opt/venv/bin:$PATH \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1

# No USER: Concourse runs resource containers as root and creates the get/put volumes owned by
# root, so `in` could not write its destination as another user. Concourse's user namespaces (on
# unprivileged workers) keep that root unprivileged on the host.

# `make image` also passes these as --label: buildah's layer cache keeps a LABEL step built with
# other ARG values.
ARG VERSION=0.1.0 SOURCE_URL=unknown REVISION=unknown
LABEL org.opencontainers.image.title="offline-bundle" \
      org.opencontainers.image.description="Concourse resource type and CLI: signed, encrypted bundles carried into air-gapped networks through S3" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="debian:bookworm-slim"
