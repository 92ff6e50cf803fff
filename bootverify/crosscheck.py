"""Static prediction against runtime outcome: does the analysis tell the truth?

Agreement per module:
- confirmed     failure predicted and observed, the kernel named the predicted symbols;
- latent        a KMI violation predicted as latent (kernel not trimmed) and it loaded;
- missed        the kernel refused to link it and the analysis did not predict that (or named
                other symbols): a link failure the analysis could not explain, a defect of the
                analysis, reported loudly with where to report it (ISSUES_URL);
- unconfirmed   failure predicted, but it linked (it loaded, or got as far as its init);
- runtime-only  init error, hang or crash: not a linking problem, nothing to predict;
- skipped       not handed to the kernel (blocklisted, not-found, unlisted): nothing observed;
                the static verdict stands alone;
- ok            predicted to load, and loaded.

Findings (kmsg.Finding: a WARN, a sanitizer report, a failed probe, ...) are not linking and do
not change the agreement; the classes in `fail_on` fail the run all the same.
"""

from __future__ import annotations

import enum
import functools
import importlib.metadata
from collections.abc import Sequence
from dataclasses import dataclass

from bootverify.readers.modules import module_name
from bootverify.runtime.kmsg import (
    DEFAULT_FAIL_ON,
    Finding,
    FindingClass,
    LinkProblem,
    LinkProblemKind,
    Outcome,
    RuntimeResult,
)
from bootverify.static.analysis import Prediction, ProblemKind, Verdict


class Agreement(enum.Enum):
    CONFIRMED = "confirmed"
    LATENT = "latent"
    MISSED = "missed"
    UNCONFIRMED = "unconfirmed"
    RUNTIME_ONLY = "runtime-only"
    SKIPPED = "skipped"
    OK = "ok"


DISAGREEMENTS = frozenset({Agreement.MISSED, Agreement.UNCONFIRMED})

# pyproject.toml's [project.urls] Issues, for when the package metadata is not installed.
ISSUES_FALLBACK = "https://github.com/bootverify/bootverify/issues"


@functools.cache          # once a process: every `missed` module names it
def issues_url() -> str:
    """The project's issue tracker, from the installed metadata's Project-URL "Issues, URL"."""
    try:
        urls = importlib.metadata.metadata("bootverify").get_all("Project-URL") or []
    except importlib.metadata.PackageNotFoundError:
        return ISSUES_FALLBACK
    for entry in urls:
        label, _, url = entry.partition(",")
        if label.strip().lower() == "issues" and url.strip():
            return url.strip()
    return ISSUES_FALLBACK


def _missed(why: str) -> str:
    return f"{why}; the analysis cannot explain this link failure: please report it at " \
           f"{issues_url()}"


@dataclass(frozen=True)
class ModuleVerdict:
    name: str
    prediction: Prediction | None       # None: a module static analysis did not see
    runtime: RuntimeResult
    agreement: Agreement
    why: str                            # one line for the report when it is not plain ok


def _symbols_agree(prediction: Prediction, runtime: RuntimeResult) -> bool:
    """The kernel stops at its first failing check (vermagic, module_layout before symbols),
    so what it names is a subset of what the analysis predicts."""
    predicted = {p.symbol for p in prediction.problems if p.fatal}
    observed = {p.symbol for p in runtime.problems}
    return observed <= predicted | {""}


RUNTIME_ONLY_OUTCOMES = frozenset({Outcome.INIT_ERROR, Outcome.HUNG, Outcome.CRASHED})
# Never given to the kernel: nothing to compare.
NOT_LOADED_OUTCOMES = frozenset({Outcome.SKIPPED, Outcome.NOT_FOUND, Outcome.UNLISTED})
# Not a failure of its own: blocklisted on purpose, or in no list (a set with .ko files and no
# load list at all is a failure of the run: verdict.py).
NOT_FAILED_OUTCOMES = frozenset({Outcome.LOADED, Outcome.SKIPPED, Outcome.UNLISTED})


def agree(prediction: Prediction | None, runtime: RuntimeResult,
          failed_at_runtime: tuple[str, ...] = ()) -> ModuleVerdict:
    """failed_at_runtime: its dependencies that did not load for runtime-only reasons (init
    error, hang, crash); the link errors they cause are theirs, and nothing to predict."""
    verdict = prediction.verdict if prediction else Verdict.OK
    outcome = runtime.outcome

    def result(a: Agreement, why: str = "") -> ModuleVerdict:
        # The kernel's name for it (modinfo name=), which its log uses, over the file's.
        return ModuleVerdict(prediction.name if prediction else runtime.name, prediction,
                             runtime, a, why)

    if outcome is Outcome.SKIPPED:
        return result(Agreement.SKIPPED, runtime.reason)
    if outcome in NOT_LOADED_OUTCOMES:
        static = f"; static: {verdict.value}" if prediction else ""
        return result(Agreement.SKIPPED, f"{outcome.value}: {runtime.reason}{static}")
    if outcome is Outcome.LINK_ERROR:
        observed = ", ".join(f"{p.kind.value} {p.symbol}".strip() for p in runtime.problems)
        if prediction is None:
            return result(Agreement.MISSED,
                          _missed(f"not analysed statically; kernel: {observed}"))
        if verdict is Verdict.FAIL and _symbols_agree(prediction, runtime):
            return result(Agreement.CONFIRMED, observed)
        if failed_at_runtime and verdict is not Verdict.FAIL:
            return result(Agreement.RUNTIME_ONLY, f"{observed}: needs "
                          f"{', '.join(failed_at_runtime)}, which did not load at runtime")
        predicted = ", ".join(p.symbol for p in prediction.problems if p.fatal) or "nothing"
        return result(Agreement.MISSED, _missed(f"kernel: {observed}; predicted: {predicted}"))
    if verdict is Verdict.FAIL:
        return result(Agreement.UNCONFIRMED,
                      f"predicted to fail to link, but the outcome was {outcome.value}")
    if outcome in RUNTIME_ONLY_OUTCOMES:
        return result(Agreement.RUNTIME_ONLY, runtime.reason or runtime.modprobe_message)
    if verdict is Verdict.WARN:
        return result(Agreement.LATENT, "; ".join(f"{p.kind.value} {p.symbol}"
                                                  for p in prediction.problems))  # type: ignore
    return result(Agreement.OK)


def crosscheck(predictions: tuple[Prediction, ...],
               runtime: list[RuntimeResult]) -> list[ModuleVerdict]:
    by_name = {p.name: p for p in predictions}
    # The plan names a module by its file, as libmodprobe does; the analysis by its modinfo
    # name=, as the kernel does. A module whose two names differ is found by its file.
    by_file = {module_name(p.path): p for p in predictions}
    verdicts = []
    # Modules whose failure had a runtime-only cause, their own or, transitively, a
    # dependency's; results come in load order, so dependencies are seen first.
    runtime_caused: set[str] = set()
    for r in runtime:
        v = agree(by_name.get(r.name) or by_file.get(r.name), r,
                  tuple(d for d in r.failed_dependencies if d in runtime_caused))
        if v.agreement is Agreement.RUNTIME_ONLY:
            runtime_caused.add(r.name)
        verdicts.append(v)
    return verdicts


def failing_findings(v: ModuleVerdict,
                     fail_on: frozenset[FindingClass] = DEFAULT_FAIL_ON) -> tuple[Finding, ...]:
    return tuple(f for f in v.runtime.findings if f.kind in fail_on)


def fails(outcome: Outcome, agreement: Agreement, failing_finding: bool = False) -> bool:
    """A module's own failure: it did not load (blocklisted and unlisted ones aside), the
    halves disagree, or its load showed a finding that fails the run. The one rule for the exit
    status, --expect, --baseline, --rerun-failed."""
    return agreement in DISAGREEMENTS or outcome not in NOT_FAILED_OUTCOMES or failing_finding


def module_fails(v: ModuleVerdict, fail_on: frozenset[FindingClass] = DEFAULT_FAIL_ON) -> bool:
    return fails(v.runtime.outcome, v.agreement, bool(failing_findings(v, fail_on)))


def failed(verdicts: Sequence[ModuleVerdict],
           fail_on: frozenset[FindingClass] = DEFAULT_FAIL_ON) -> bool:
    """Exit 1 (with the device verdict's failures): a module fails (module_fails())."""
    return any(module_fails(v, fail_on) for v in verdicts)


# --- one vocabulary: each runtime link problem kind and the static problem kinds it is ---

@dataclass(frozen=True)
class LinkKind:
    static: tuple[ProblemKind, ...]    # the static kinds the kernel reports this way; first is
                                       # the one named when no prediction says which
    explanation: str                   # what it means, for the grouped summary


P = ProblemKind
# The kernel's messages (runtime/kmsg.py KERNEL_MESSAGES) against the analysis' rules
# (static/analysis.py): "Unknown symbol" (err -2) is what the kernel says for a symbol it does
# not export, a trimmed-away (non-KMI) one, a GPL-only one to a non-GPL module, or one a failed
# dependency (or a provider the plan loads later or never: packaging) would have provided.
LINK_KINDS: dict[LinkProblemKind, LinkKind] = {
    LinkProblemKind.UNKNOWN_SYMBOL: LinkKind(
        (P.UNRESOLVED, P.NOT_IN_KMI, P.GPL_ONLY, P.DEPENDENCY_FAILED, P.PACKAGING),
        "the kernel exports no such symbol to this module"),
    LinkProblemKind.DISAGREES_ABOUT_VERSION: LinkKind(
        (P.CRC_MISMATCH,), "built against another version of the symbol (CRC mismatch)"),
    LinkProblemKind.NO_SYMBOL_VERSION: LinkKind(
        (P.MISSING_VERSION,), "the module has no CRC for a symbol the kernel versions"),
    LinkProblemKind.PROTECTED_SYMBOL: LinkKind(
        (P.PROTECTED,), "a GKI protected symbol, refused to an unsigned module"),
    LinkProblemKind.NAMESPACE_NOT_IMPORTED: LinkKind(
        (P.NAMESPACE,), "uses a symbol namespace it does not import"),
    LinkProblemKind.VERSION_MAGIC: LinkKind(
        (P.VERMAGIC,), "vermagic of another kernel"),
    LinkProblemKind.INVALID_FORMAT: LinkKind((), "not a valid module file for this kernel"),
    LinkProblemKind.DUPLICATE_EXPORT: LinkKind(
        (P.DUPLICATE_EXPORT,), "exports a symbol that is already exported"),
    LinkProblemKind.SIGNATURE_REJECTED: LinkKind((), "its signature was rejected"),
}
del P
# module_layout's CRC stands for the whole struct module: a mismatch means another kernel.
MODULE_LAYOUT = "module_layout"
MODULE_LAYOUT_EXPLANATION = "modules built for another kernel"


def static_kind(problem: LinkProblem, prediction: Prediction | None) -> ProblemKind | None:
    """The static problem kind a runtime link problem is: the predicted problem of one of its
    kinds on the same symbol, else the kind's first."""
    kinds = LINK_KINDS[problem.kind].static
    if prediction is not None:
        for p in prediction.problems:
            if p.kind in kinds and p.symbol == problem.symbol and p.fatal:
                return p.kind
    return kinds[0] if kinds else None


def explanation(problem: LinkProblem) -> str:
    if problem.symbol == MODULE_LAYOUT:
        return MODULE_LAYOUT_EXPLANATION
    return LINK_KINDS[problem.kind].explanation
