// SPDX-License-Identifier: GPL-2.0
/*
 * Healthy. The device's "core" driver that other device modules build on. It exports
 * vendor_core_register() to everyone and vendor_core_debug_dump() only to modules that import
 * the VENDOR_CORE_INTERNAL namespace (vendor_sensor does, vendor_debug does not).
 * Expected kernel message: "vendor_core: ready".
 */
#include <linux/module.h>
#include <linux/printk.h>

static int clients;

int vendor_core_register(const char *client)
{
	clients++;
	pr_info("vendor_core: client %s registered\n", client);
	return 0;
}
EXPORT_SYMBOL_GPL(vendor_core_register);

void vendor_core_debug_dump(void)
{
	pr_info("vendor_core: %d client(s)\n", clients);
}
EXPORT_SYMBOL_NS_GPL(vendor_core_debug_dump, VENDOR_CORE_INTERNAL);

static int __init vendor_core_init(void)
{
	pr_info("vendor_core: ready\n");
	return 0;
}
module_init(vendor_core_init);

static void __exit vendor_core_exit(void)
{
}
module_exit(vendor_core_exit);

MODULE_DESCRIPTION("bootverify sample: healthy, exports symbols to other device modules");
MODULE_LICENSE("GPL");
