// SPDX-License-Identifier: GPL-2.0
/*
 * Healthy. Uses vendor_core's plain export and its namespaced one (importing the namespace, as it
 * must), a KMI symbol (ktime_get), and a parameter that modules.options sets.
 * Expected kernel messages: "vendor_core: client vendor_sensor registered",
 * "vendor_sensor: polling every 50 ms" (50 comes from modules.options, the default is 100).
 */
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/printk.h>
#include <linux/timekeeping.h>

int vendor_core_register(const char *client);
void vendor_core_debug_dump(void);

static unsigned int poll_ms = 100;
module_param(poll_ms, uint, 0444);
MODULE_PARM_DESC(poll_ms, "sensor polling period in milliseconds");

static int __init vendor_sensor_init(void)
{
	ktime_t start = ktime_get();
	int ret = vendor_core_register("vendor_sensor");

	if (ret)
		return ret;
	vendor_core_debug_dump();
	pr_info("vendor_sensor: polling every %u ms (probe took %lld ns)\n", poll_ms,
		ktime_to_ns(ktime_sub(ktime_get(), start)));
	return 0;
}
module_init(vendor_sensor_init);

static void __exit vendor_sensor_exit(void)
{
}
module_exit(vendor_sensor_exit);

MODULE_IMPORT_NS(VENDOR_CORE_INTERNAL);
MODULE_DESCRIPTION("bootverify sample: healthy, depends on vendor_core, takes modules.options");
MODULE_LICENSE("GPL");
