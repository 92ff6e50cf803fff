"""kmi-diff on the sample kernels: the replacement build's changed struct crypto_alg must show as
CRC changes of exactly the KMI symbols whose types reach it (images/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootverify.readers.symbols import read_kmi_symbol_lists, read_symvers
from bootverify.static.kmidiff import Change, exports_by_symbol, kmi_diff


@pytest.mark.images
@pytest.mark.timeout(900)       # a cold sample build comes first
def test_replacement_changes_the_crypto_crcs(sample_images: Path) -> None:
    kmi = read_kmi_symbol_lists([sample_images / "kmi_symbol_list"])
    diff = kmi_diff(exports_by_symbol(read_symvers(sample_images / "vmlinux.symvers")),
                    exports_by_symbol(read_symvers(sample_images / "replacement/vmlinux.symvers")),
                    kmi)
    changed = {c.symbol for c in diff.changes if c.change is Change.CRC_CHANGED}
    assert {"crypto_register_shash", "crypto_unregister_shash", "crypto_alloc_shash",
            "crypto_destroy_tfm"} <= changed
    assert "_printk" not in changed and "module_layout" not in changed
    # nothing the KMI lists is missing from the untrimmed replacement kernel
    assert [c for c in diff.changes if c.change is Change.REMOVED] == []
    assert diff.compared == len(kmi)
    # the GKI kernel exported every KMI symbol, so the replacement adds none of them; the
    # thousands it exports beyond the KMI are no KMI question
    assert [c for c in diff.changes if c.change is Change.ADDED] == []
    everything = kmi_diff(exports_by_symbol(read_symvers(sample_images / "vmlinux.symvers")),
                          exports_by_symbol(read_symvers(sample_images
                                                         / "replacement/vmlinux.symvers")), None)
    assert {c.symbol for c in everything.changes if c.change is Change.ADDED} >= {"msleep"}
