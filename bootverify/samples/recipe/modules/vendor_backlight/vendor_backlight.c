// SPDX-License-Identifier: GPL-2.0
/*
 * Fault: uses msleep(), which the kernel exports but the KMI symbol list does not name, so the
 * trimmed GKI kernel (CONFIG_TRIM_UNUSED_KSYMS) no longer exports it. modpost only warns
 * (KBUILD_MODPOST_WARN=1: "msleep" undefined); on a kernel that is not trimmed it loads fine.
 * Expected kernel message on the GKI kernel: "vendor_backlight: Unknown symbol msleep (err -2)".
 */
#include <linux/delay.h>
#include <linux/module.h>
#include <linux/printk.h>

int vendor_backlight_set(unsigned int level)
{
	msleep(1);	/* let the (imaginary) PWM settle */
	pr_info("vendor_backlight: level %u\n", level);
	return 0;
}
EXPORT_SYMBOL_GPL(vendor_backlight_set);

static int __init vendor_backlight_init(void)
{
	return vendor_backlight_set(128);
}
module_init(vendor_backlight_init);

static void __exit vendor_backlight_exit(void)
{
}
module_exit(vendor_backlight_exit);

MODULE_DESCRIPTION("bootverify sample: uses an export the KMI trimmed away (msleep)");
MODULE_LICENSE("GPL");
