// SPDX-License-Identifier: GPL-2.0
/*
 * Built (so that modpost knows vendor_modem's dependency) but deliberately left out of the
 * vendor ramdisk: the packaging mistake vendor_modem seeds. Never in any image.
 */
#include <linux/module.h>
#include <linux/printk.h>

int vendor_modem_ipc_send(const void *msg, size_t len)
{
	pr_info("vendor_modem_shared: %zu byte message\n", len);
	return 0;
}
EXPORT_SYMBOL_GPL(vendor_modem_ipc_send);

MODULE_DESCRIPTION("bootverify sample: provider that is not shipped");
MODULE_LICENSE("GPL");
