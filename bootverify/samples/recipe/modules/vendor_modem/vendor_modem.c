// SPDX-License-Identifier: GPL-2.0
/*
 * Fault: depends on vendor_modem_shared, which was built but not packed into the image, so
 * nothing on the device exports vendor_modem_ipc_send.
 * Expected kernel message: "vendor_modem: Unknown symbol vendor_modem_ipc_send (err -2)".
 */
#include <linux/module.h>
#include <linux/printk.h>

int vendor_modem_ipc_send(const void *msg, size_t len);

static int __init vendor_modem_init(void)
{
	static const char hello[] = "AT";

	return vendor_modem_ipc_send(hello, sizeof(hello));
}
module_init(vendor_modem_init);

static void __exit vendor_modem_exit(void)
{
}
module_exit(vendor_modem_exit);

MODULE_DESCRIPTION("bootverify sample: depends on a module that is not in the image");
MODULE_LICENSE("GPL");
