#!/bin/sh
# Set up (idempotently), build the sample images (cached) and run bootverify on them: boot
# boot.img + vendor_kernel_boot.img in qemu, modprobe every device module, cross-check with the
# static analysis. The samples carry seeded faults on purpose and ship them as expect.toml, so
# this is the nightly job on the samples (ci/nightly.sh: `run --dist` on the output directory,
# a dist directory as a Kleaf build leaves one): exit 0 when they behave as designed, 1 on a
# regression. Reports land in ./bootverify-demo/.
set -eu
cd "$(dirname "$0")/.."
exec ./ci/nightly.sh --output bootverify-demo "$@"
