"""bootverify: does a device's kernel module set load on this kernel? Checked statically and
for real, in qemu."""
