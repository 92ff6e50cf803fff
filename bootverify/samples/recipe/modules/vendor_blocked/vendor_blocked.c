// SPDX-License-Identifier: GPL-2.0
/*
 * Healthy code, but listed in modules.blocklist ("blocklist vendor_blocked"), so Android's first
 * stage never loads it although modules.load names it.
 * Expected: no kernel message at all; "vendor_blocked: loaded" would mean the blocklist was ignored.
 */
#include <linux/module.h>
#include <linux/printk.h>

static int __init vendor_blocked_init(void)
{
	pr_info("vendor_blocked: loaded\n");
	return 0;
}
module_init(vendor_blocked_init);

static void __exit vendor_blocked_exit(void)
{
}
module_exit(vendor_blocked_exit);

MODULE_DESCRIPTION("bootverify sample: blocklisted in modules.blocklist");
MODULE_LICENSE("GPL");
