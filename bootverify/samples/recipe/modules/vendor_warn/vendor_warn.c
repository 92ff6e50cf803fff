// SPDX-License-Identifier: GPL-2.0
/*
 * Finding: init finds its calibration table empty, WARNs and goes on with defaults; the module
 * loads. Expected kernel messages: the WARN block, "------------[ cut here ]------------",
 * "vendor_warn: empty calibration table, using defaults", "WARNING: CPU: 0 PID: <pid> at
 * .../vendor_warn.c:<line> vendor_warn_init+0x.../0x... [vendor_warn]", the registers and call
 * trace, "---[ end trace 0000000000000000 ]---"; init_module succeeds.
 */
#include <linux/bug.h>
#include <linux/module.h>
#include <linux/printk.h>

/* Should have been filled from the device tree by a board file this driver never got. */
static unsigned int calibration_entries;

static int __init vendor_warn_init(void)
{
	WARN(calibration_entries == 0, "vendor_warn: empty calibration table, using defaults\n");
	pr_info("vendor_warn: ready\n");
	return 0;
}
module_init(vendor_warn_init);

static void __exit vendor_warn_exit(void)
{
}
module_exit(vendor_warn_exit);

MODULE_DESCRIPTION("bootverify sample: init WARNs and loads");
MODULE_LICENSE("GPL");
