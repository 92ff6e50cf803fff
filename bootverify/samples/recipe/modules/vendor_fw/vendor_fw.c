// SPDX-License-Identifier: GPL-2.0
/*
 * Finding: a platform driver whose probe asks for a firmware file the image does not ship
 * (vendor/vendor_fw.bin); it goes on without it, so probe and init succeed and the module loads.
 * Expected kernel messages (Debian's firmware loader logs the failure itself, then the upstream
 * line): "vendor_fw vendor_fw: firmware: failed to load vendor/vendor_fw.bin (-2)", "vendor_fw
 * vendor_fw: Direct firmware load for vendor/vendor_fw.bin failed with error -2", "vendor_fw
 * vendor_fw: no firmware, running on ROM defaults".
 */
#include <linux/err.h>
#include <linux/firmware.h>
#include <linux/module.h>
#include <linux/platform_device.h>

#define VENDOR_FW_FILE "vendor/vendor_fw.bin"

static int vendor_fw_probe(struct platform_device *pdev)
{
	const struct firmware *fw;

	if (request_firmware(&fw, VENDOR_FW_FILE, &pdev->dev)) {
		dev_info(&pdev->dev, "no firmware, running on ROM defaults\n");
		return 0;
	}
	dev_info(&pdev->dev, "firmware of %zu bytes\n", fw->size);
	release_firmware(fw);
	return 0;
}

static struct platform_driver vendor_fw_driver = {
	.probe = vendor_fw_probe,
	.driver = { .name = "vendor_fw" },
};

static struct platform_device *vendor_fw_device;

static int __init vendor_fw_init(void)
{
	int ret = platform_driver_register(&vendor_fw_driver);

	if (ret)
		return ret;
	/* The device a board file would declare; registering it probes it right away. */
	vendor_fw_device = platform_device_register_simple("vendor_fw", PLATFORM_DEVID_NONE,
							   NULL, 0);
	if (IS_ERR(vendor_fw_device)) {
		platform_driver_unregister(&vendor_fw_driver);
		return PTR_ERR(vendor_fw_device);
	}
	return 0;
}
module_init(vendor_fw_init);

static void __exit vendor_fw_exit(void)
{
	platform_device_unregister(vendor_fw_device);
	platform_driver_unregister(&vendor_fw_driver);
}
module_exit(vendor_fw_exit);

MODULE_DESCRIPTION("bootverify sample: probe requests firmware that is not there");
MODULE_FIRMWARE(VENDOR_FW_FILE);
MODULE_LICENSE("GPL");
