// SPDX-License-Identifier: GPL-2.0
/*
 * Fault: a non-GPL module using a GPL-only export (ktime_get). modpost rejects that outright, so
 * the module is built as "Dual MIT/GPL" and the builder then rewrites the modinfo string in the
 * .ko to "Proprietary" (padded with a NUL to the same length), which is what a vendor shipping a
 * closed driver with a wrong license tag amounts to.
 * Expected kernel messages: "vendor_blob: module license 'Proprietary' taints kernel.",
 * "vendor_blob: Unknown symbol ktime_get (err -2)".
 */
#include <linux/module.h>
#include <linux/printk.h>
#include <linux/timekeeping.h>

static int __init vendor_blob_init(void)
{
	pr_info("vendor_blob: started at %lld ns\n", ktime_to_ns(ktime_get()));
	return 0;
}
module_init(vendor_blob_init);

static void __exit vendor_blob_exit(void)
{
}
module_exit(vendor_blob_exit);

MODULE_DESCRIPTION("bootverify sample: non-GPL module using a GPL-only export");
MODULE_LICENSE("Dual MIT/GPL");
