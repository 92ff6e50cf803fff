// SPDX-License-Identifier: GPL-2.0
/*
 * Runtime fault: init waits for a firmware handshake that never comes. It sleeps (uninterruptible,
 * like most driver waits) rather than spinning, so the rest of the system keeps running and the
 * hung-task detector (CONFIG_DEFAULT_HUNG_TASK_TIMEOUT=10) reports it, unless an oops earlier in
 * the same boot switched the detector off (it stays quiet once the kernel is tainted D).
 * Expected kernel messages: "vendor_hang: waiting for firmware handshake", then 10-20 s later
 * "INFO: task insmod:<pid> blocked for more than 10 seconds." (the task is whatever loads it).
 */
#include <linux/completion.h>
#include <linux/module.h>
#include <linux/printk.h>

static DECLARE_COMPLETION(fw_handshake);

static int __init vendor_hang_init(void)
{
	pr_info("vendor_hang: waiting for firmware handshake\n");
	wait_for_completion(&fw_handshake);
	return 0;
}
module_init(vendor_hang_init);

static void __exit vendor_hang_exit(void)
{
}
module_exit(vendor_hang_exit);

MODULE_DESCRIPTION("bootverify sample: init blocks forever");
MODULE_LICENSE("GPL");
