"""The modules directory's text files (readers/modulesdir.py): libmodprobe's Parse*Callback
rules, on crafted directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootverify.errors import InputError
from bootverify.readers.modulesdir import (
    DynOptions,
    MakeCanonical,
    Softdep,
    parse_modules_dir,
    read_modules_dir,
)


def _write(root: Path, **files: str) -> Path:
    root.mkdir(exist_ok=True)
    for name, text in files.items():
        (root / name.replace("_", ".", 1)).write_text(text)
    return root


def test_modules_dir_files(tmp_path):
    root = _write(
        tmp_path / "m",
        modules_load="# comment\nkernel/a.ko\n\n  vendor/b-c.ko  \n",
        modules_dep="kernel/a.ko:\nvendor/b-c.ko: kernel/a.ko   kernel/z.ko\n# x\n",
        modules_blocklist="blocklist bad-mod\n# blocklist commented\nblocklist other\n",
        modules_options="options snd-hda  index=1 model=x\noptions plain\n",
    )
    md = read_modules_dir(root)
    assert md.root == root
    assert md.load == ("kernel/a.ko", "vendor/b-c.ko")
    assert md.dep == {"kernel/a.ko": (), "vendor/b-c.ko": ("kernel/a.ko", "kernel/z.ko")}
    assert md.blocklist == frozenset({"bad_mod", "other"})
    assert md.options == {"snd_hda": "index=1 model=x", "plain": ""}


def test_modules_dir_files_absent(tmp_path):
    md = read_modules_dir(tmp_path)
    assert (md.load, dict(md.dep), md.blocklist, dict(md.options)) == ((), {}, frozenset(), {})


@pytest.mark.parametrize("name,text,line,error", [
    ("modules.dep", "kernel/a.ko\n", 1, "dependency lines must start with name followed by ':'"),
    ("modules.dep", "kernel/a.ko:\nno colon here\n", 2, "followed by ':'"),
    ("modules.blocklist", "blocklist\n", 1, "must have exactly 2 entries, not 1"),
    ("modules.blocklist", "blocklist a\nblacklist b\n", 2,
     "non-blocklist line encountered in modules.blocklist"),
    ("modules.options", "option foo x=1\n", 1, "non-options line encountered"),
    ("modules.options", "options\n", 1, "must have at least 2 entries, not 1"),
    ("modules.options", "options a x=1\noptions a y=2\n", 2,
     "multiple options lines present for module a"),
    ("modules.alias", "alias onlytwo\n", 1, "must have 3 entries, not 2"),
    ("modules.alias", "aliases a b\n", 1, "non-alias line encountered in modules.alias"),
    ("modules.softdep", "softdep a pre:\n", 1, "must have at least 4 entries"),
    # Debian's depmod writes this from cifs's MODULE_SOFTDEP("gcm"): no pre:/post:
    ("modules.softdep", "softdep cifs gcm\n", 1, "must have at least 4 entries"),
    ("modules.softdep", "softdep a b pre: c\n", 1, "malformed modules.softdep at token b"),
])
def test_libmodprobe_drops_a_malformed_line(tmp_path, name, text, line, error):
    """ParseCfg() ignores what a callback returns: the device logs the line and goes on, and so
    does the plan, which names it."""
    good_line, read = {
        "modules.dep": ("kernel/ok.ko:\n", lambda md: "kernel/ok.ko" in md.dep),
        "modules.blocklist": ("blocklist ok\n", lambda md: "ok" in md.blocklist),
        "modules.options": ("options ok x=1\n", lambda md: md.options.get("ok") == "x=1"),
        "modules.alias": ("alias ok* ok\n", lambda md: ("ok*", "ok") in md.aliases),
        "modules.softdep": ("softdep ok pre: dep\n",
                            lambda md: Softdep("ok", "pre", "dep") in md.softdeps),
    }[name]
    (tmp_path / name).write_text(text + good_line)
    md = read_modules_dir(tmp_path)
    assert [(d.file, d.line) for d in md.dropped] == [(name, line)]
    assert error in md.dropped[0].error and name in md.dropped[0].note()
    assert read(md)     # the good line after it is read
    # an options line for a module that had one stays the first
    if "options a y=2" in text:
        assert md.options["a"] == "x=1"


def test_modules_dir_not_utf8(tmp_path):
    (tmp_path / "modules.load").write_bytes(b"kernel/\xff.ko\n")
    with pytest.raises(InputError) as e:
        read_modules_dir(tmp_path)
    assert e.value.path == str(tmp_path / "modules.load")


def test_make_canonical():
    assert MakeCanonical("/vendor/lib/modules/snd-soc-x.ko") == "snd_soc_x"
    assert MakeCanonical("kernel/crc32c_generic") == "crc32c_generic"
    # compressed: the suffix goes too, as kmod drops it (libmodprobe keeps "x.ko.xz")
    assert MakeCanonical("kernel/net/nf-tables.ko.xz") == "nf_tables"
    assert MakeCanonical("a.ko.zst") == "a" and MakeCanonical("b.ko.gz") == "b"


def test_alias_softdep_mode_lists_and_dyn_options():
    md = parse_modules_dir(Path("m"), {
        "modules.alias": "# x\nalias crc32c crc32c_generic\nalias pci:v00008086d* e1000e\n",
        "modules.softdep": "softdep libcrc32c pre: crc32c\nsoftdep a pre: b c post: d-e\n",
        "modules.load.charger": "charger.ko\n",
        "modules.options": 'options a x=1\ndyn_options b 1000 "/vendor/bin/opts b"\n',
    })
    assert md.aliases == (("crc32c", "crc32c_generic"), ("pci:v00008086d*", "e1000e"))
    assert md.softdeps == (Softdep("libcrc32c", "pre", "crc32c"), Softdep("a", "pre", "b"),
                           Softdep("a", "pre", "c"), Softdep("a", "post", "d-e"))
    assert md.load == () and md.load_list("modules.load.charger") == ("charger.ko",)
    assert "modules.load.recovery" not in md.mode_loads
    assert md.options == {"a": "x=1"}
    assert md.dyn_options == (DynOptions("b", 'dyn_options b 1000 "/vendor/bin/opts b"'),)
