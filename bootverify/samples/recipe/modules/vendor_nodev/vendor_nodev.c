// SPDX-License-Identifier: GPL-2.0
/*
 * Runtime fault: links fine, but its hardware is absent (no "vendor,absent-device" node in the
 * device tree), so init returns -ENODEV, as a driver for another board revision would.
 * Expected: kernel message "vendor_nodev: no vendor,absent-device node"; init_module fails with
 * ENODEV (busybox: "insmod: can't insert 'vendor_nodev.ko': No such device").
 */
#include <linux/module.h>
#include <linux/of.h>
#include <linux/printk.h>

static int __init vendor_nodev_init(void)
{
	struct device_node *np = of_find_compatible_node(NULL, NULL, "vendor,absent-device");

	if (!np) {
		pr_info("vendor_nodev: no vendor,absent-device node\n");
		return -ENODEV;
	}
	of_node_put(np);
	return 0;
}
module_init(vendor_nodev_init);

static void __exit vendor_nodev_exit(void)
{
}
module_exit(vendor_nodev_exit);

MODULE_DESCRIPTION("bootverify sample: init returns -ENODEV");
MODULE_LICENSE("GPL");
