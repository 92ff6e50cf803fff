// SPDX-License-Identifier: GPL-2.0
/*
 * Fault: built against the other kernel of the pair (the GKI image's copy against the
 * full-replacement kernel, the replacement image's copy against the GKI kernel). The replacement
 * adds a field to struct crypto_alg (images/replacement.patch), so the genksyms CRCs of
 * crypto_alloc_shash and crypto_destroy_tfm differ between the two.
 * Expected kernel messages: "vendor_hash: disagrees about version of symbol crypto_alloc_shash",
 * "vendor_hash: Unknown symbol crypto_alloc_shash (err -22)" (and the same for crypto_destroy_tfm).
 */
#include <crypto/hash.h>
#include <linux/err.h>
#include <linux/module.h>
#include <linux/printk.h>

static int __init vendor_hash_init(void)
{
	struct crypto_shash *tfm = crypto_alloc_shash("crc32c", 0, 0);

	if (IS_ERR(tfm))
		return PTR_ERR(tfm);
	pr_info("vendor_hash: crc32c digest size %u\n", crypto_shash_digestsize(tfm));
	crypto_free_shash(tfm);
	return 0;
}
module_init(vendor_hash_init);

static void __exit vendor_hash_exit(void)
{
}
module_exit(vendor_hash_exit);

MODULE_DESCRIPTION("bootverify sample: CRC mismatch, built against the other kernel");
MODULE_LICENSE("GPL");
