// SPDX-License-Identifier: GPL-2.0
/*
 * Fault by dependency: a healthy module whose only provider, vendor_backlight, fails to load on
 * the GKI kernel, so vendor_backlight_set is never exported.
 * Expected on the GKI kernel: loaded with its dependencies (modprobe, the sample /init), it is never
 * tried: vendor_backlight fails again with "vendor_backlight: Unknown symbol msleep (err -2)" (the
 * sample /init then logs "init: not loading /lib/modules/vendor_panel.ko: its dependency
 * vendor_backlight.ko failed"); insmod'ed alone: "vendor_panel: Unknown symbol
 * vendor_backlight_set (err -2)". On the replacement kernel both load.
 */
#include <linux/module.h>
#include <linux/printk.h>

int vendor_backlight_set(unsigned int level);

static int __init vendor_panel_init(void)
{
	pr_info("vendor_panel: panel on\n");
	return vendor_backlight_set(255);
}
module_init(vendor_panel_init);

static void __exit vendor_panel_exit(void)
{
}
module_exit(vendor_panel_exit);

MODULE_DESCRIPTION("bootverify sample: depends on vendor_backlight, which fails to load");
MODULE_LICENSE("GPL");
