// SPDX-License-Identifier: GPL-2.0
/*
 * Runtime fault: init panics the kernel (a driver that treats a missing watchdog ack as fatal).
 * Everything after it in modules.load is lost for that boot.
 * Expected kernel message: "Kernel panic - not syncing: vendor_panic: watchdog did not answer".
 */
#include <linux/module.h>
#include <linux/panic.h>

static int __init vendor_panic_init(void)
{
	panic("vendor_panic: watchdog did not answer\n");
}
module_init(vendor_panic_init);

static void __exit vendor_panic_exit(void)
{
}
module_exit(vendor_panic_exit);

MODULE_DESCRIPTION("bootverify sample: init panics the kernel");
MODULE_LICENSE("GPL");
