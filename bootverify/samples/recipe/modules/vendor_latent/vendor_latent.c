// SPDX-License-Identifier: GPL-2.0
/*
 * Fault: built against the other kernel of the pair and modpost_warn, like a vendor module built
 * once against the trimmed GKI and shipped unchanged with a full-replacement kernel. The trimmed
 * GKI does not export msleep (outside the KMI lists), so modpost leaves it undefined and writes
 * no __versions entry for it; the replacement kernel exports msleep with a CRC. The kernel then
 * refuses the symbol in check_version() (kernel/module/version.c, as Debian's linux-source-6.1
 * builds it: "module: Disable matching missing version CRC"; upstream only warns once).
 * Expected kernel messages on the replacement kernel: "vendor_latent: no symbol version for
 * msleep", "vendor_latent: Unknown symbol msleep (err -22)". The GKI image's copy, built against
 * the replacement, has the CRC, but the trimmed GKI kernel lacks msleep:
 * "vendor_latent: Unknown symbol msleep (err -2)".
 */
#include <linux/delay.h>
#include <linux/module.h>
#include <linux/printk.h>

static int __init vendor_latent_init(void)
{
	msleep(1);	/* let the (imaginary) regulator settle */
	pr_info("vendor_latent: up\n");
	return 0;
}
module_init(vendor_latent_init);

static void __exit vendor_latent_exit(void)
{
}
module_exit(vendor_latent_exit);

MODULE_DESCRIPTION("bootverify sample: no symbol version for an export with a CRC (msleep)");
MODULE_LICENSE("GPL");
