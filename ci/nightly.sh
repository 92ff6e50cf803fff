#!/bin/sh
# The nightly boot test a team copies: boot a device's images in qemu, load every module as
# Android would, and fail only on a regression against the images' known failures.
#
#   ci/nightly.sh [--images DIR] [--output DIR] [--baseline PREV.json] [-- RUN_OPTIONS...]
#
# DIR is the device build's dist directory, as Kleaf leaves it (`bootverify run --dist`: boot.img,
# vendor_kernel_boot.img, system_dlkm.img, vmlinux.symvers, abi_symbollist, ...), plus the
# team's expect.toml (the known failures, `bootverify run --expect`) when it has one.
# Default: the sample images (built and cached), whose expect.toml lists their seeded faults.
# --output (default nightly/) receives report.json, junit.xml, summary.txt, console.log,
# meta.json; --baseline is last night's report.json (ignored if it does not exist yet: the first
# night). RUN_OPTIONS go to `bootverify run` as they are (--name, --tap, --kcidb, ...).
# Exit status: bootverify's: 0 no regression, 1 a regression, 2 bad input or infrastructure,
# 128+N a signal. ci/github-nightly.yml and ci/gitlab-nightly.yml run it in the Dockerfile's image.
set -eu
cd "$(dirname "$0")/.."
images=""
output="nightly"
baseline=""
while [ $# -gt 0 ]; do
    case "$1" in
        --images) images=$2; shift 2 ;;
        --output) output=$2; shift 2 ;;
        --baseline) baseline=$2; shift 2 ;;
        --) shift; break ;;
        *) echo "usage: ci/nightly.sh [--images DIR] [--output DIR] [--baseline PREV.json]" \
                "[-- RUN_OPTIONS...]" >&2; exit 2 ;;
    esac
done
./ci/setup.sh >&2
if [ -z "$images" ]; then
    # No pipe: a failed build must stop here, with its own error.
    build=$(.venv/bin/bootverify images build)
    images=$(printf '%s\n' "$build" | tail -n 1)
fi
# The optional inputs, each only when it exists (the first night has no baseline yet).
opt() { [ -e "$2" ] && printf '%s %s\n' "$1" "$2" || true; }
# shellcheck disable=SC2046  # (paths with blanks are not supported)
exec .venv/bin/bootverify run --dist "$images" $(opt --expect "$images/expect.toml") \
    $(opt --baseline "$baseline") --output "$output" "$@"
