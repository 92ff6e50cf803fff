"""The sample images: a GKI-like kernel with a trimmed KMI, device modules with seeded faults,
boot.img and vendor_kernel_boot.img, and a full-kernel-replacement variant.

The recipe is package data, recipe/ (`images/` in a checkout links to it): samples.toml says what
is built for each kernel generation (Debian's linux-source-6.1 and linux-source-6.12) and what
each module is expected to do on it. Everything is built under the cache directory, never in the
checkout, one output directory per generation, keyed by a hash of the recipe files that
generation uses, this builder and the source package and version, so a second `build` returns
at once.

    recipe.py   samples.toml as dataclasses; the cache key
    steps.py    running build steps (logged, time-limited, killed on failure); staging, locking
    kernels.py  the source trees, the two kernels (each a tree of its own, the replacement
                possibly built from a copy of the GKI kernel's objects), the device modules
    images.py   modules trees, ramdisks, boot and vendor boot images; `build`

Output directory (returned by `build`, one per generation: samples/GENERATION-KEY/):
    boot.img, vendor_kernel_boot.img        header v4, written by bootverify.readers.bootimg
    boot-v3.img, vendor_kernel_boot-v3.img  header v3, written by AOSP's mkbootimg
    boot-v4-mkbootimg.img,                  header v4 by AOSP's mkbootimg 34; the vendor image
    vendor_kernel_boot-v4-mkbootimg.img     has a platform and a DLKM fragment, a board id
    vmlinux.symvers, System.map, kmi_symbol_list, expected.json
    system_dlkm/                            the GKI kernel's own modules, modules.load, modules.dep
    kernel/                                 Kleaf's DEFAULT_GKI_OUTS (Image, Image.lz4, ...)
    replacement/                            the same (v4 only) for the full-kernel replacement
"""

from bootverify.samples.images import build

__all__ = ["build"]
