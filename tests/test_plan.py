"""The load plan's rules (bootverify/plan/, bootverify/verdict.py) on crafted ramdisk trees and
module directories: first_stage_init's choices, libmodprobe's order, the device verdict. Pure."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from bootverify.android import BootMode, Stage
from bootverify.plan import Disposition, LoadPlan, plan_for
from bootverify.plan.firststage import (
    FirstStageConsole,
    GetBootMode,
    GetModuleLoadList,
    GetPageSizeSuffix,
    proc_bootconfig,
)
from bootverify.readers.ramdisk import CpioEntry
from bootverify.verdict import Boots, device_verdict

RELEASE = "6.1.25-android14-11"


def tree(files: dict[str, str]) -> dict[str, CpioEntry]:
    """A ramdisk tree: name -> text (a .ko's text is its content, it is never read)."""
    out = {}
    for name, text in files.items():
        parts = name.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            out[d] = CpioEntry(d, stat.S_IFDIR | 0o755)
        out[name] = CpioEntry(name, stat.S_IFREG | 0o644, text.encode())
    return out


def plan(files: dict[str, str], *, cmdline: str = "", bootconfig: str = "",
         mode: BootMode | None = None, dlkm: dict[str, Path] | None = None) -> LoadPlan:
    return plan_for(tree(files), RELEASE, b"", bootconfig.encode(), cmdline, dlkm, mode)


def loads(p: LoadPlan) -> list[str]:
    return [p.units[s.key].name for s in p.steps if s.line is not None]


def by_name(p: LoadPlan) -> dict[str, Disposition]:
    return {k[1]: u.disposition for k, u in p.units.items()}


# --- first_stage_init.cpp ---

def test_proc_bootconfig_quotes_values_as_the_kernel_does():
    raw = b'androidboot.mode = charger\n# c\nandroidboot.x="a"; a.b = 1, 2\n'
    text = proc_bootconfig(raw + bytes(8) + b"#BOOTCONFIG\n")
    assert text == ('androidboot.mode = "charger"\nandroidboot.x = "a"\na.b = "1", "2"\n')


@pytest.mark.parametrize("cmdline,bootconfig,recovery,mode", [
    ("", "", False, BootMode.NORMAL),
    ("", 'androidboot.mode = "charger"\n', False, BootMode.CHARGER),
    ("androidboot.mode=charger", "", True, BootMode.CHARGER),      # charger before recovery
    ("", "", True, BootMode.RECOVERY),
    ("", 'androidboot.force_normal_boot = "1"\n', True, BootMode.NORMAL),
    ("androidboot.force_normal_boot=1", "", True, BootMode.NORMAL),
])
def test_boot_mode(cmdline, bootconfig, recovery, mode):
    assert GetBootMode(cmdline, bootconfig, recovery)[0] is mode


def test_first_stage_console_and_page_size():
    assert FirstStageConsole("", 'androidboot.first_stage_console = "1"\n') == 1
    assert FirstStageConsole("androidboot.first_stage_console=2", "") == 2
    assert FirstStageConsole("androidboot.first_stage_console=7", "") == 0
    # bootconfig has the key: the cmdline is not read
    assert FirstStageConsole("androidboot.first_stage_console=2",
                             "androidboot.first_stage_console = x\n") == 0
    image = bytes(24) + (2 << 1).to_bytes(8, "little")
    assert (GetPageSizeSuffix(image), GetPageSizeSuffix(bytes(64))) == ("_16k", "")


def test_mode_list_falls_back_to_modules_load():
    assert GetModuleLoadList(BootMode.CHARGER, ["modules.load.charger"]) == "modules.load.charger"
    assert GetModuleLoadList(BootMode.RECOVERY, ["modules.load.charger"]) == "modules.load"


def test_charger_mode_loads_the_charger_list():
    files = {"lib/modules/a.ko": "", "lib/modules/c.ko": "",
             "lib/modules/modules.dep": "a.ko:\nc.ko:\n",
             "lib/modules/modules.load": "a.ko\n", "lib/modules/modules.load.charger": "c.ko\n"}
    p = plan(files, bootconfig="androidboot.mode = charger\n")
    assert loads(p) == ["c"] and by_name(p)["a"] is Disposition.UNLISTED
    assert p.sets[0].load_file == "modules.load.charger" and p.boot.mode is BootMode.CHARGER
    assert loads(plan(files, bootconfig="androidboot.mode = charger\n",
                      mode=BootMode.NORMAL)) == ["a"]            # --boot-mode wins
    assert loads(plan(files, mode=BootMode.RECOVERY)) == ["a"]   # no .recovery: modules.load


def test_module_directory_choice():
    one = {"a.ko": "", "modules.dep": "a.ko:\n", "modules.load": "a.ko\n"}

    def under(d: str) -> dict[str, str]:
        return {f"lib/modules/{d}{name}": t for name, t in one.items()}

    # uname -r wins outright, even over a major.minor dir sorted first
    p = plan({**under("6.1/"), **under(f"{RELEASE}/"), **under("")})
    assert p.sets[0].guest_dir == f"/lib/modules/{RELEASE}"
    # else the first sorted major.minor dir whose list loads something; 6.10 is not 6.1
    empty = {"lib/modules/6.1.0/modules.load": "gone.ko\n", "lib/modules/6.1.0/x.ko": ""}
    p = plan({**empty, **under("6.1.9/"), **under("6.10/"), **under("")})
    assert p.sets[0].guest_dir == "/lib/modules/6.1.9"
    # a page-size suffix that is not the kernel's: not a candidate
    assert plan({**under("6.1_16k/"), **under("")}).sets[0].guest_dir == "/lib/modules"
    assert plan(under("5.15/")).sets[0].guest_dir == "/lib/modules"


# --- libmodprobe.cpp ---

def test_insmod_with_deps_softdeps_aliases_options():
    files = {f"lib/modules/{n}.ko": "" for n in ("a", "b", "c", "crc32c_generic", "libcrc32c",
                                                  "post", "x")}
    files |= {
        "lib/modules/modules.dep": "a.ko: b.ko c.ko\nb.ko: c.ko\nc.ko:\nlibcrc32c.ko:\n"
                                   "crc32c_generic.ko:\npost.ko:\nx.ko:\n",
        "lib/modules/modules.softdep": "softdep libcrc32c pre: crc32c post: post nothere\n",
        "lib/modules/modules.alias": "alias crc32c crc32c_generic\nalias wifi* x\n",
        "lib/modules/modules.load": "a.ko\nlibcrc32c.ko\nwifi_chip\n",
        "lib/modules/modules.options": "options a p=1\n",
    }
    p = plan(files, cmdline='a.q=2 console=ttyAMA0 b.s="x y"')
    # hard deps in reverse modules.dep order; softdep pre (an alias), the module, softdep post
    assert loads(p) == ["c", "b", "a", "crc32c_generic", "libcrc32c", "post", "x"]
    units = {k[1]: u for k, u in p.units.items()}
    assert units["a"].params == "p=1 q=2" and units["b"].params == 's="x y"'
    # a load-list entry that is only an alias loads what the alias names
    assert [x.keys for x in p.listed if x.entry == "wifi_chip"] == [(("vendor_ramdisk", "x"),)]
    assert "nothere" not in units                    # a softdep that does not exist: nothing


def test_not_found_blocklisted_unlisted():
    files = {f"lib/modules/{n}.ko": "" for n in ("a", "blk", "nodep", "stray", "dep_of_blk")}
    files |= {
        "lib/modules/modules.dep": "a.ko: blk.ko\nblk.ko: dep_of_blk.ko\nnodep_gone.ko:\n"
                                   "vendor_wifi.ko:\ndep_of_blk.ko:\n",
        "lib/modules/modules.load": "a.ko\nnodep.ko\nvendor_wifi.ko\nblk.ko\n",
        "lib/modules/modules.blocklist": "blocklist blk\n",
    }
    p = plan(files)
    d = by_name(p)
    assert d["nodep"] is Disposition.NOT_FOUND            # its .ko is there, modules.dep not
    assert d["vendor_wifi"] is Disposition.NOT_FOUND      # in modules.dep, no .ko
    assert d["blk"] is Disposition.BLOCKLISTED
    # a blocklisted module's own deps are not loaded (ModuleExists refuses it first)
    assert d["stray"] is d["dep_of_blk"] is Disposition.UNLISTED
    assert loads(p) == ["a"]                               # still tried: the kernel has a say
    # but a blocklisted hard dep fails it (LoadWithAliases, strict), even when it links
    v = device_verdict(p, outcomes(p, blk="skipped"))
    assert v.stops_at == "a" and "(a needs blk: blocklisted" in v.reason
    assert [s.skip for s in p.steps if p.units[s.key].name == "vendor_wifi"] == [
        "vendor_wifi.ko: not in the image"]


def test_no_modules_dep_makes_nothing_loadable():
    p = plan({"lib/modules/a.ko": "", "lib/modules/b.ko": "",
              "lib/modules/modules.load": "a.ko\nb.ko\n"})
    assert loads(p) == [] and set(by_name(p).values()) == {Disposition.NOT_FOUND}


def test_dyn_options_and_parallel_are_noted():
    p = plan({"lib/modules/a.ko": "", "lib/modules/modules.dep": "a.ko:\n",
              "lib/modules/modules.load": "a.ko\n",
              "lib/modules/modules.options": 'dyn_options a 0 "/bin/x"\n'},
             bootconfig="androidboot.load_modules_parallel = true\n")
    assert any("not evaluated" in n for n in p.notes)
    assert any("waves" in n for n in p.notes) and p.boot.parallel


def test_dlkm_dir_without_modules_load_is_unlisted(tmp_path):
    (tmp_path / "v.ko").write_bytes(b"")
    p = plan({}, dlkm={"vendor_dlkm": tmp_path})
    assert by_name(p) == {"v": Disposition.UNLISTED}
    assert [s.origin for s in p.unlisted_sets()] == ["vendor_dlkm"]


def test_a_malformed_softdep_line_is_dropped_and_noted():
    """Debian's depmod writes `softdep cifs gcm` (MODULE_SOFTDEP without pre:): the device
    logs it and loads the rest; so does the plan, and it says so."""
    p = plan({"lib/modules/a.ko": "", "lib/modules/gcm.ko": "",
              "lib/modules/modules.dep": "a.ko:\ngcm.ko:\n",
              "lib/modules/modules.load": "a.ko\n",
              "lib/modules/modules.softdep": "softdep a gcm\nsoftdep a pre: gcm\n"})
    assert [s.key[1] for s in p.steps] == ["gcm", "a"]
    assert [n for n in p.notes if "modules.softdep line 1 dropped" in n
            and "must have at least 4 entries" in n]


# --- the device verdict ---

SIMPLE = {f"lib/modules/{n}.ko": "" for n in ("a", "b", "c", "blk")} | {
    "lib/modules/modules.dep": "a.ko:\nb.ko: a.ko\nc.ko:\nblk.ko:\n",
    "lib/modules/modules.load": "a.ko\nblk.ko\nb.ko\nc.ko\n",
    "lib/modules/modules.blocklist": "blocklist blk\n",
}


def outcomes(p: LoadPlan, **got: str) -> dict[tuple[str, str], str]:
    return {k: got.get(k[1], "loaded") for k in p.units}


def test_verdict_boots_when_every_entry_loads():
    p = plan(SIMPLE)
    v = device_verdict(p, outcomes(p, blk="skipped"))
    assert (v.verdict, v.stage, v.stops_at, v.failures) == (Boots.BOOTS, None, None, ())
    assert not v.failed


def test_verdict_first_stage_stops_at_the_first_failure():
    p = plan(SIMPLE)
    # b loads, but its hard dep a did not: InsmodWithDeps fails b too; a comes first
    v = device_verdict(p, outcomes(p, a="init-error", c="link-error"))
    assert (v.verdict, v.stage, v.stops_at) == (Boots.STOPS, Stage.FIRST, "a")
    assert "Failed to load kernel modules" in v.reason and len(v.failures) == 3
    v = device_verdict(p, outcomes(p, c="link-error"))
    assert v.stops_at == "c"


def test_verdict_first_stage_console():
    p = plan(SIMPLE, cmdline="androidboot.first_stage_console=2")
    v = device_verdict(p, outcomes(p, c="link-error"))
    assert v.verdict is Boots.BOOTS and "not strict" in v.reason and v.failed
    p = plan(SIMPLE, bootconfig='androidboot.first_stage_console = "1"\n')
    v = device_verdict(p, outcomes(p, c="link-error"))
    assert (v.verdict, v.stops_at) == (Boots.STOPS, "c") and "starting console" in v.reason


def test_verdict_not_found_and_no_load_list():
    p = plan(SIMPLE | {"lib/modules/modules.load": "a.ko\nvendor_wifi.ko\nc.ko\n"})
    v = device_verdict(p, outcomes(p))
    assert (v.verdict, v.stops_at) == (Boots.STOPS, "vendor_wifi") and "not-found" in v.reason
    p = plan({"lib/modules/a.ko": "", "lib/modules/modules.dep": "a.ko:\n"})
    v = device_verdict(p, outcomes(p))
    assert (v.verdict, v.stage, v.stops_at) == (Boots.STOPS, Stage.FIRST, None)
    assert "no modules.load entries" in v.reason


def test_verdict_second_stage_does_not_stop_the_boot(tmp_path):
    (tmp_path / "v.ko").write_bytes(b"")
    (tmp_path / "modules.dep").write_text("v.ko:\n")
    (tmp_path / "modules.load").write_text("v.ko\n")
    p = plan(SIMPLE, dlkm={"vendor_dlkm": tmp_path})
    v = device_verdict(p, outcomes(p, v="link-error"))
    assert (v.verdict, v.stage) == (Boots.BOOTS, None) and "second stage" in v.reason
    assert v.failed and v.failures == ("vendor_dlkm: v: link-error",)


# --- parallel loading (LoadModulesParallel) ---

PARALLEL = 'androidboot.load_modules_parallel = "true"\n'
# d needs c needs b; a and e alone; s has load_sequential=1; p is a soft pre-dep of e
WAVES = {f"lib/modules/{n}.ko": "" for n in "abcdesp"} | {
    "lib/modules/modules.dep": "a.ko:\nb.ko:\nc.ko: b.ko\nd.ko: c.ko b.ko\ne.ko:\ns.ko:\np.ko:\n",
    "lib/modules/modules.load": "d.ko\na.ko\ne.ko\ns.ko\n",
    "lib/modules/modules.softdep": "softdep e pre: p\n",
    "lib/modules/modules.options": "options s load_sequential=1 x=1\n",
}


def waves(p: LoadPlan) -> list[list[str]]:
    return [[p.unit_at(line).name for line in w] for w in p.waves]


def test_parallel_waves_are_dependency_leaves():
    p = plan(WAVES, bootconfig=PARALLEL)
    # wave 1: each entry's last modules.dep path (a, b, e's, s); s alone (load_sequential),
    # e's soft pre-dep p alone before e's wave; then c (d's next leaf), then d. A wave lists
    # its modules as the device's threads take them: from the back of the entries (a, d, e)
    assert waves(p) == [["s"], ["p"], ["e", "b", "a"], ["c"], ["d"]]
    assert p.lines[0] == "/lib/modules/s.ko x=1"          # the token is erased
    assert p.lines[2:5] == ("/lib/modules/e.ko", "&/lib/modules/b.ko", "&/lib/modules/a.ko")
    assert any("waves" in n for n in p.notes)
    # the same plan without the bootconfig: InsmodWithDeps order, one at a time
    seq = plan(WAVES)
    assert waves(seq) == [["b"], ["c"], ["d"], ["a"], ["p"], ["e"], ["s"]]
    assert {s.key for s in seq.steps} == {s.key for s in p.steps}


def test_parallel_not_loaded_entries_come_first_and_unlisted_last():
    p = plan(WAVES | {"lib/modules/modules.load": "x.ko\nd.ko\na.ko\n",
                      "lib/modules/modules.blocklist": "blocklist a\n"}, bootconfig=PARALLEL)
    names = [(p.units[s.key].name, s.line) for s in p.steps]
    assert names[:2] == [("x", None), ("a", None)]
    assert waves(p) == [["b"], ["c"], ["d"]]
    assert {n for n, line in names[5:]} == {"e", "s", "p"}      # unlisted, at the end


def test_a_module_in_two_partitions_is_a_duplicate_in_load_order(tmp_path):
    sd = tmp_path / "system_dlkm"
    (sd / "kernel/mm").mkdir(parents=True)
    for name in ("kernel/mm/a.ko", "blk.ko"):
        (sd / name).write_bytes(b"")
    (sd / "modules.dep").write_text("kernel/mm/a.ko:\n")
    (sd / "modules.load").write_text("kernel/mm/a.ko\n")
    vd = tmp_path / "vendor_dlkm"
    vd.mkdir()
    (vd / "c.ko").write_bytes(b"")
    (vd / "modules.dep").write_text("c.ko:\nb.ko:\n")
    (vd / "modules.load").write_text("c.ko\nb.ko\n")        # b.ko: listed, not shipped
    p = plan(SIMPLE, dlkm={"vendor_dlkm": vd, "system_dlkm": sd})
    # Listed, blocklisted or unlisted, each copy is a file on the device; a name only is not.
    assert [[(u.origin, u.path, u.disposition) for u in d] for d in p.duplicates()] == [
        [("vendor_ramdisk", "/lib/modules/a.ko", Disposition.LOAD),
         ("system_dlkm", "/system_dlkm/lib/modules/kernel/mm/a.ko", Disposition.LOAD)],
        [("vendor_ramdisk", "/lib/modules/blk.ko", Disposition.BLOCKLISTED),
         ("system_dlkm", "/system_dlkm/lib/modules/blk.ko", Disposition.UNLISTED)],
        [("vendor_ramdisk", "/lib/modules/c.ko", Disposition.LOAD),
         ("vendor_dlkm", "/vendor_dlkm/lib/modules/c.ko", Disposition.LOAD)]]
    assert plan(SIMPLE).duplicates() == ()
