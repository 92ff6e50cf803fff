// SPDX-License-Identifier: GPL-2.0
/*
 * Fault: uses vendor_core_debug_dump, exported in namespace VENDOR_CORE_INTERNAL, without
 * MODULE_IMPORT_NS(VENDOR_CORE_INTERNAL). modpost refuses that unless told otherwise; the build
 * passes CONFIG_MODULE_ALLOW_MISSING_NAMESPACE_IMPORTS=y on the make command line for this module
 * only (modpost -N), while the running kernel keeps enforcing imports.
 * Expected kernel messages: "vendor_debug: module uses symbol (vendor_core_debug_dump) from
 * namespace VENDOR_CORE_INTERNAL, but does not import it.",
 * "vendor_debug: Unknown symbol vendor_core_debug_dump (err -22)".
 */
#include <linux/module.h>

void vendor_core_debug_dump(void);

static int __init vendor_debug_init(void)
{
	vendor_core_debug_dump();
	return 0;
}
module_init(vendor_debug_init);

static void __exit vendor_debug_exit(void)
{
}
module_exit(vendor_debug_exit);

MODULE_DESCRIPTION("bootverify sample: namespaced export used without MODULE_IMPORT_NS");
MODULE_LICENSE("GPL");
