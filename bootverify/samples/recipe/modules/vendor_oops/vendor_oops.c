// SPDX-License-Identifier: GPL-2.0
/*
 * Runtime fault: init reads a register block that was never mapped (a NULL pointer), the kernel
 * oopses and kills the loading process; the kernel itself keeps running (no panic_on_oops).
 * Expected kernel messages: "Unable to handle kernel NULL pointer dereference at virtual address
 * 0000000000000000", "Internal error: Oops: ...", a call trace through vendor_oops_init.
 */
#include <linux/compiler.h>
#include <linux/module.h>
#include <linux/printk.h>
#include <linux/types.h>

struct vendor_oops_regs {
	u32 status;
};

/* Should have come from ioremap() in a probe that this driver forgot to write. */
static struct vendor_oops_regs *regs;

static int __init vendor_oops_init(void)
{
	pr_info("vendor_oops: reading status\n");
	return READ_ONCE(regs->status) ? 0 : -EIO;
}
module_init(vendor_oops_init);

static void __exit vendor_oops_exit(void)
{
}
module_exit(vendor_oops_exit);

MODULE_DESCRIPTION("bootverify sample: init oopses (NULL dereference)");
MODULE_LICENSE("GPL");
