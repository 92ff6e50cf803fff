#!/bin/sh
# Idempotent set-up on Debian bookworm (as root): the apt packages bootverify drives, arm64 as a
# foreign architecture (for `apt-get download ...:arm64`), and a virtualenv in .venv with the
# package and its test tools. Sourced by ci/demo.sh and ci/test.sh; safe to run again.
set -eu
cd "$(dirname "$0")/.."

APT_PACKAGES="qemu-system-arm gcc-aarch64-linux-gnu linux-source-6.1 mkbootimg lz4 cpio kmod \
flex bison bc libssl-dev libelf-dev make xz-utils python3-venv procps"

missing=""
for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
    need_update=1
fi
if [ -n "$missing" ] || [ -n "${need_update:-}" ]; then
    apt-get update -q
fi
if [ -n "$missing" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi

# The venv is rebuilt only when pyproject.toml changes.
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
    rm -f .venv/.installed-*
    touch "$stamp"
fi
