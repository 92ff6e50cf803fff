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


@pytest.mark.parametrize("name,text,line", [
    ("modules.dep", "kernel/a.ko\n", 1),
    ("modules.dep", "kernel/a.ko:\nno colon here\n", 2),
    ("modules.blocklist", "blocklist\n", 1),
    ("modules.blocklist", "blocklist a\nblacklist b\n", 2),
    ("modules.options", "option foo x=1\n", 1),
    ("modules.options", "options\n", 1),
])
def test_modules_dir_malformed(tmp_path, name, text, line):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError) as e:
        read_modules_dir(tmp_path)
    assert e.value.path == str(tmp_path / name)
    assert f"line {line}:" in str(e.value)


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


@pytest.mark.parametrize("name,text", [
    ("modules.alias", "alias onlytwo\n"),
    ("modules.alias", "aliases a b\n"),
    ("modules.softdep", "softdep a pre:\n"),
    ("modules.softdep", "softdep a b pre: c\n"),          # a name before pre:/post:
    ("modules.options", "options a x=1\noptions a y=2\n"),  # one options line a module
    ("modules.blocklist", "blocklist a b\n"),
])
def test_libmodprobe_malformed_lines(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError) as e:
        read_modules_dir(tmp_path)
    assert e.value.path == str(tmp_path / name)
