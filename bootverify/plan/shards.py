"""The load plan cut into parts: one per guest of `run --jobs N`, one per CI job of
`run --shard I/N`. Pure data, deterministic: the same plan gives the same parts on every host
and in every run (no hashing of anything but names, no host facts).

A group is what must stay together: a load-list entry with everything its loads reach (its
modules, their hard deps, soft pre- and post-deps, transitively), or a module no entry reaches
(a blocklisted, not-found or unlisted one). A group owns the steps of the plan it is the first
to reach, in plan order: their results are its part's to report, once. A part's guest loads the
whole closure of its groups, in the plan's order (its waves too), so every module's
dependencies load before it as in the full plan; a dependency that another part owns is loaded
again there and its result there is not counted.

A part is a run of consecutive groups, in plan order, cut where the part's guest would load
more than the smallest bound that `n` parts can keep to (split()). What a module's init sees
loaded before it is then what one guest loading the whole plan would show, not only its
modules.dep closure: the entries before it in the load list are loaded before it in its part
too. That matters for what an init asks for that is no dependency: Debian's nls_euc_jp and
nls_koi8_ru call load_nls("cp932"/"koi8-u"), a request_module of the table modules.order loads
just before them; a guest has no modprobe to answer it, so they load only when that table
loaded before them, as in one run of the whole list. Across a cut, the part after it first
loads the `WARM_UP` entries before the cut (their closures; results not its own), so a module
right after a cut sees its neighbours too.

What can still differ from one run: an init that needs (by request_module or by what it finds
registered: an nls table, a crypto algorithm, a line discipline, a protocol family) a module
listed more than WARM_UP entries before it, across a cut, which its part's guest has not
loaded; or the reverse, an init that fails in one run because a module far before it claimed
something first (EBUSY, EEXIST). Such a module's outcome in a part differs from one run's; the
report shows it as its own outcome (an init-error, typically EINVAL or ENOENT, with the
kernel's lines if its init logged any), and the report names the cuts to look after: a note
(cut_note) in the report of a run with several guests and in a merged one, the shards' first
entries in `plan --json`.

Balance, on all 3,685 of Debian 6.1's arm64 modules (modules.order order): 2 parts load 1,937
and 1,937 (5.1% loaded twice, 0.2 points of it the warm-up; --jobs 2 bounded at 1.90x), 4 parts
1,000, 1,000, 1,000 and 999 (8.5%). The split before this one gave groups out largest closure
first to the least loaded part, not in runs: 1,976 and 1,975 (7.2%, 1.86x); 4 x 1,070 (16.1%);
and it lost the neighbours above. A small plan may need fewer parts than asked (a cut costing
the part after it more than it takes off the busiest): the rest are empty.

What a load costs: by default one load is one load. With `Costs` from a previous run of the
plan (`--baseline PREV.json`: last night's report), a load costs what it took then, and a module
that hung or crashed also costs the reboot after it, as CI systems split test suites by
recorded durations. That is what counts when a few modules take most of the time: on Debian's
set five neighbouring speakup synths hang (10 s each, then a reboot: ~22 s, as much as 1,000
loads), so that the part holding them is the slowest whatever the loads say (1.67x for --jobs
2, idle); by the seconds, the cut falls between them (2.03x, benchmarks/bench_jobs.py). A
warm-up also stops at a module that hung or crashed then: one run rebooted there, so what
loaded before it was not loaded any more (but what later modules depend on, which a part's
guest loads anyway).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

from bootverify.plan.model import Key, LoadPlan, Step


WARM_UP = 8          # load-list entries before a cut that the part after it loads first
CUT_CAVEAT = (f"a module whose init needs a module listed more than {WARM_UP} entries before it "
              f"across a cut (by request_module or by what it finds registered, not by "
              f"modules.dep) can have another outcome there than in one guest")


@dataclass(frozen=True)
class Costs:
    """What each load costs a guest, in milliseconds: by default 1 each (the count of loads);
    from a previous run (nightly/previous.py), what each module took then."""
    ms: Mapping[Key, int] = field(default_factory=dict)
    default: int = 1                       # a module not in `ms`
    reboots: frozenset[Key] = frozenset()  # the modules after which the previous run rebooted
    source: str = ""                       # the report they come from ("": counted loads)

    def of(self, keys: Collection[Key]) -> int:
        return sum(self.ms.get(k, self.default) for k in keys)


BY_COUNT = Costs()


@dataclass(frozen=True)
class Group:
    entry: int | None              # index in plan.listed; None: a module no entry reaches
    owned: tuple[Key, ...]         # the steps whose results are this group's, in plan order
    closure: frozenset[Key]        # what its guest loads (or records) for it
    # the closures of the WARM_UP groups before it: what a part that starts with it loads first
    before: frozenset[Key] = frozenset()


@dataclass(frozen=True)
class Part:
    index: int                     # 0-based
    groups: tuple[Group, ...]      # consecutive, in plan order

    @property
    def owned(self) -> frozenset[Key]:
        return frozenset(k for g in self.groups for k in g.owned)

    @property
    def entries(self) -> frozenset[int]:
        return frozenset(g.entry for g in self.groups if g.entry is not None)

    @property
    def closure(self) -> frozenset[Key]:
        if not self.groups:
            return frozenset()
        return self.groups[0].before.union(*(g.closure for g in self.groups))


def groups(plan: LoadPlan, warm_up: int = WARM_UP,
           reboots: frozenset[Key] = frozenset()) -> tuple[Group, ...]:
    """The plan's groups: the load-list entries in plan order, then the steps none reached;
    each with the closures of the `warm_up` groups before it, back to the last group with one
    of `reboots` (Costs.reboots), that one not included."""
    claimed: set[Key] = set()
    out = []
    order = {s.key: i for i, s in enumerate(plan.steps)}
    for i, x in enumerate(plan.listed):
        closure = plan.reach(x.keys, post=True)
        owned = sorted(closure - claimed, key=order.__getitem__)
        claimed |= closure
        out.append(Group(i, tuple(owned), closure))
    out += [Group(None, (s.key,), plan.reach([s.key], post=True)) for s in plan.steps
            if s.key not in claimed]
    reset = -1                      # the last group that holds a module of `reboots`
    before = []
    for i, g in enumerate(out):
        since = out[max(0, i - warm_up, reset + 1):i]
        before.append(frozenset().union(*(h.closure for h in since)))
        if reboots.intersection(g.owned):
            reset = i
    return tuple(replace(g, before=b) for g, b in zip(out, before, strict=True))


def _starts(items: Sequence[Group], bound: int, n: int, costs: Costs) -> list[int] | None:
    """Where parts that cost at most `bound` start, each as long as the bound lets it be (a
    part's loads: its first group's warm-up and its groups' closures); None if that takes more
    than `n` parts."""
    starts: list[int] = []
    loaded: set[Key] = set()
    cost = 0
    for i, g in enumerate(items):
        new = g.closure - loaded
        more = costs.of(new)
        if starts and cost + more <= bound:
            loaded |= new
            cost += more
            continue
        loaded = set(g.before | g.closure)
        cost = costs.of(loaded)
        if cost > bound or len(starts) == n:
            return None
        starts.append(i)
    return starts


def split(items: Sequence[Group], n: int, costs: Costs = BY_COUNT) -> tuple[Part, ...]:
    """`items` (consecutive groups, in plan order) into `n` runs of consecutive groups, the
    least the costliest part can cost (a binary search over that bound; parts filled in order
    up to it), then empty parts if fewer are needed."""
    if n < 1:
        raise ValueError(f"{n} parts")
    starts: list[int] = []
    if items:
        low, high = 1, costs.of(items[0].before.union(*(g.closure for g in items)))
        while low < high:
            mid = (low + high) // 2
            if _starts(items, mid, n, costs) is None:
                low = mid + 1
            else:
                high = mid
        found = _starts(items, low, n, costs)
        # A part's cost only grows with the groups it has (a later start's warm-up is inside
        # what an earlier start loads), so filling parts in order is optimal for each bound
        # and the search's answer is a bound the filling meets.
        assert found is not None
        starts = found
    runs = [tuple(items[a:b]) for a, b in zip(starts, [*starts[1:], len(items)], strict=False)]
    return tuple(Part(p, runs[p] if p < len(runs) else ()) for p in range(n))


def cut_note(what: str, cuts: Sequence[str], costs: Costs = BY_COUNT) -> str:
    """What a report says of the plan cut before the load-list entries `cuts`."""
    how = f" by the seconds of {costs.source}" if costs.source else ""
    return f"{what}, the plan cut{how} before {', '.join(cuts)}: {CUT_CAVEAT}"


def part_plan(plan: LoadPlan, part: Part) -> LoadPlan:
    """The plan a part's guest runs: the plan's steps that its groups reach, in plan order,
    lines renumbered, waves kept (a step joins the step before it if both were in one wave)."""
    keep = part.closure
    wave_id: dict[Key, int] = {}
    for i, w in enumerate(plan.waves):
        for line in w:
            wave_id[plan.unit_at(line).key] = i
    steps: list[Step] = []
    line = 0
    last_wave = None
    for s in plan.steps:
        if s.key not in keep:
            continue
        if s.line is None:
            steps.append(s)
            continue
        line += 1
        steps.append(replace(s, line=line,
                             joins=s.joins and wave_id[s.key] == last_wave and line > 1))
        last_wave = wave_id[s.key]
    return replace(plan, steps=tuple(steps))

