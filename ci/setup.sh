#!/bin/sh
# Idempotent set-up on Debian bookworm (as root): the apt packages bootverify drives, arm64 as a
# foreign architecture (for `apt-get download ...:arm64`), and a virtualenv in .venv with the
# package and its test tools. Sourced by ci/demo.sh and ci/test.sh; safe to run again, and quick
# (one dpkg-query, no network) when everything is present. README.md says why each package is here.
set -eu
# Sourced, $0 is the caller (which has already gone to the checkout); run, it is this file.
[ -f ci/setup.sh ] || cd "$(dirname "$0")/.."

# The sample images' kernel build: the cross compiler, the host compiler for kbuild's own tools
# (fixdep, kconfig, modpost), and what kbuild and the recipe call.
BUILD="linux-source-6.1 gcc-aarch64-linux-gnu gcc libc6-dev make flex bison bc libssl-dev \
libelf-dev patch xz-utils"
# What bootverify runs: the guest, AOSP's mkbootimg (v3 images), ramdisk and module tools.
RUNTIME="qemu-system-arm mkbootimg lz4 cpio kmod procps"
# The virtualenv and pip's TLS to PyPI.
PYTHON="python3-venv ca-certificates"
APT_PACKAGES="$BUILD $RUNTIME $PYTHON"

# One dpkg-query for all: a package it does not know is reported on stderr and left out.
installed=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' $APT_PACKAGES 2>/dev/null |
    awk '$1 == "ii" { print $2 }')
missing=""
for p in $APT_PACKAGES; do
    printf '%s\n' "$installed" | grep -qx "$p" || missing="$missing $p"
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
