#!/bin/sh
# Set up (idempotently), build the sample images (cached) and run bootverify on them: boot
# boot.img + vendor_kernel_boot.img in qemu, modprobe every device module, cross-check with the
# static analysis. The samples carry seeded faults on purpose, so exit status 1 is the expected
# result here; reports land in ./bootverify-demo/.
set -eu
cd "$(dirname "$0")/.."
. ci/setup.sh
# No pipe: a failed build must stop here, with its own error (set -e sees the assignment fail).
build=$(.venv/bin/bootverify images build)
out=$(printf '%s\n' "$build" | tail -n 1)
mkdir -p bootverify-demo
set +e
# The output directory is a dist directory, as a Kleaf build leaves one: --dist takes it as is.
.venv/bin/bootverify run --dist "$out" \
    --json bootverify-demo/report.json --junit bootverify-demo/junit.xml \
    --console-log bootverify-demo/console.log
rc=$?
set -e
echo "demo: bootverify exited $rc (1 expected: the samples carry seeded faults); reports in bootverify-demo/"
[ "$rc" -le 1 ]
