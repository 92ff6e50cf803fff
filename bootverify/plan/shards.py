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

Groups go to parts largest closure first (ties: plan order), each to the part whose guest
would then load the fewest modules, counting the loads it has already (ties: the lowest part):
closures that share dependencies go together while that keeps the parts even. Debian's
modules.dep is one connected tangle (2,668 of its 3,685 arm64 modules share dependencies), so
whole components cannot be balanced; plain longest-processing-time on closure sizes gave two
parts of 2,148 and 2,101 loads (15% loaded twice), this 1,976 and 1,975 (7%).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from bootverify.plan.model import Key, LoadPlan, Step


@dataclass(frozen=True)
class Group:
    entry: int | None              # index in plan.listed; None: a module no entry reaches
    owned: tuple[Key, ...]         # the steps whose results are this group's, in plan order
    closure: frozenset[Key]        # what its guest loads (or records) for it

    @property
    def loads(self) -> int:
        return len(self.closure)


@dataclass(frozen=True)
class Part:
    index: int                     # 0-based
    groups: tuple[Group, ...]

    @property
    def owned(self) -> frozenset[Key]:
        return frozenset(k for g in self.groups for k in g.owned)

    @property
    def entries(self) -> frozenset[int]:
        return frozenset(g.entry for g in self.groups if g.entry is not None)

    @property
    def closure(self) -> frozenset[Key]:
        return frozenset().union(*(g.closure for g in self.groups))


def groups(plan: LoadPlan) -> tuple[Group, ...]:
    """The plan's groups: the load-list entries in plan order, then the steps none reached."""
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
    return tuple(out)


def split(items: Sequence[Group], n: int) -> tuple[Part, ...]:
    """`items` into `n` parts (some may be empty): largest closure first (ties: plan order),
    each to the part whose guest would then load the fewest modules (ties: the lowest part),
    counting what the part loads already: groups that share dependencies go together when
    that keeps the parts even."""
    if n < 1:
        raise ValueError(f"{n} parts")
    closures: list[set[Key]] = [set() for _ in range(n)]
    members: list[list[int]] = [[] for _ in range(n)]
    for i in sorted(range(len(items)), key=lambda i: (-items[i].loads, i)):
        closure = items[i].closure
        part = min(range(n), key=lambda p: (len(closures[p]) + len(closure - closures[p]), p))
        closures[part] |= closure
        members[part].append(i)
    return tuple(Part(p, tuple(items[i] for i in sorted(m))) for p, m in enumerate(members))


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

