#!/bin/sh
# The nightly boot test a team copies: boot a device's images in qemu, load every module as
# Android would, and fail only on a regression against the images' known failures.
#
#   ci/nightly.sh [--images DIR] [--output DIR] [--baseline PREV.json] [-- RUN_OPTIONS...]
#
# DIR holds boot.img, vendor_kernel_boot.img (or vendor_boot.img), vmlinux.symvers (or
# System.map), and when the device has them: system_dlkm/, vendor_dlkm/, kmi_symbol_list,
# abi_gki_protected_exports, expect.toml (the known failures, `bootverify run --expect`).
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
vendor="$images/vendor_kernel_boot.img"
[ -f "$vendor" ] || vendor="$images/vendor_boot.img"
symbols="--symvers $images/vmlinux.symvers"
[ -f "$images/vmlinux.symvers" ] || symbols="--system-map $images/System.map"
# The optional inputs, each only when the device has it; word splitting is wanted for $symbols
# only (image directories with blanks in their path are not supported).
opt() { [ -e "$2" ] && printf '%s %s\n' "$1" "$2" || true; }
# shellcheck disable=SC2046
exec .venv/bin/bootverify run --boot "$images/boot.img" --vendor-kernel-boot "$vendor" \
    $symbols $(opt --system-dlkm "$images/system_dlkm") $(opt --vendor-dlkm "$images/vendor_dlkm") \
    $(opt --kmi-symbol-list "$images/kmi_symbol_list") \
    $(opt --protected-exports "$images/abi_gki_protected_exports") \
    $(opt --expect "$images/expect.toml") $(opt --baseline "$baseline") \
    --output "$output" "$@"
