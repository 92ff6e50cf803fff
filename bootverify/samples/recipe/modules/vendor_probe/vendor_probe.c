// SPDX-License-Identifier: GPL-2.0
/*
 * Finding: a platform driver whose probe gets no answer from its controller and fails with
 * -ETIMEDOUT. The driver core logs it and goes on; the driver stays registered, so init succeeds
 * and the module loads without its device. Expected kernel messages: "vendor_probe vendor_probe:
 * controller did not answer", "vendor_probe: probe of vendor_probe failed with error -110".
 */
#include <linux/err.h>
#include <linux/errno.h>
#include <linux/module.h>
#include <linux/platform_device.h>

static int vendor_probe_probe(struct platform_device *pdev)
{
	dev_err(&pdev->dev, "controller did not answer\n");
	return -ETIMEDOUT;
}

static struct platform_driver vendor_probe_driver = {
	.probe = vendor_probe_probe,
	.driver = { .name = "vendor_probe" },
};

static struct platform_device *vendor_probe_device;

static int __init vendor_probe_init(void)
{
	int ret = platform_driver_register(&vendor_probe_driver);

	if (ret)
		return ret;
	/* The device a board file would declare; registering it probes it right away. */
	vendor_probe_device = platform_device_register_simple("vendor_probe",
							      PLATFORM_DEVID_NONE, NULL, 0);
	if (IS_ERR(vendor_probe_device)) {
		platform_driver_unregister(&vendor_probe_driver);
		return PTR_ERR(vendor_probe_device);
	}
	return 0;
}
module_init(vendor_probe_init);

static void __exit vendor_probe_exit(void)
{
	platform_device_unregister(vendor_probe_device);
	platform_driver_unregister(&vendor_probe_driver);
}
module_exit(vendor_probe_exit);

MODULE_DESCRIPTION("bootverify sample: probe fails, init succeeds");
MODULE_LICENSE("GPL");
