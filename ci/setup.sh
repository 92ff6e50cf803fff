#!/bin/sh
# Idempotent set-up on Debian bookworm (as root): the apt packages bootverify drives, arm64 as a
# foreign architecture (for `apt-get download ...:arm64`), and a virtualenv in .venv with the
# package and its test tools. Sourced by ci/demo.sh and ci/test.sh; safe to run again, and quick
# (one dpkg-query, no network) when everything is present. README.md says why each package is here.
set -eu
# Sourced, $0 is the caller (which has already gone to the checkout); run, it is this file.
[ -f ci/setup.sh ] || cd "$(dirname "$0")/.."

# The sample images' kernel builds: the cross compiler, the host compiler for kbuild's own tools
# (fixdep, kconfig, modpost), and what kbuild and the recipe call. linux-source-6.12 comes apart
# below, with mkbootimg.
BUILD="linux-source-6.1 gcc-aarch64-linux-gnu gcc libc6-dev make flex bison bc libssl-dev \
libelf-dev patch xz-utils"
# What bootverify runs: the guest, ramdisk and module tools. AOSP's mkbootimg comes apart below.
# (zstd: the tests compress modules with the tools kbuild uses, xz-utils and gzip being there.)
RUNTIME="qemu-system-arm lz4 cpio kmod procps e2fsprogs erofs-utils zstd"
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
# Two packages bookworm has not, or too old, which its backports have: AOSP's mkbootimg 34
# (boot and vendor boot v4, ramdisk tables, bootconfig; bookworm's 29 writes up to v3 only) and
# linux-source-6.12 (the newest sample kernel). Trixie and later have both.
MKBOOTIMG_MIN=1:34
BACKPORTS=/etc/apt/sources.list.d/bootverify-backports.sources
backported=""
mkbootimg_version=$(dpkg-query -W -f='${Version}' mkbootimg 2>/dev/null || true)
if [ -z "$mkbootimg_version" ] || dpkg --compare-versions "$mkbootimg_version" lt "$MKBOOTIMG_MIN"
then
    backported="mkbootimg"
fi
if [ "$(dpkg-query -W -f='${db:Status-Abbrev}' linux-source-6.12 2>/dev/null || true)" != "ii " ]
then
    backported="$backported linux-source-6.12"
fi
if [ -n "$backported" ]; then
    if grep -qx 'VERSION_CODENAME=bookworm' /etc/os-release && [ ! -f "$BACKPORTS" ] &&
        ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' \
            'Suites: bookworm-backports' 'Components: main' \
            'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' > "$BACKPORTS"
    fi
    # The package lists may predate the backports source (or lack it): read them afresh.
    need_update=1
fi
if [ -n "$missing" ] || [ -n "${need_update:-}" ]; then
    apt-get update -q
fi
if [ -n "$missing" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi
if [ -n "$backported" ]; then
    target=$(grep -qx 'VERSION_CODENAME=bookworm' /etc/os-release && echo bookworm-backports ||
        true)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        ${target:+-t "$target"} $backported
fi

# The venv is rebuilt only when pyproject.toml changes.
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
    rm -f .venv/.installed-*
    touch "$stamp"
fi
