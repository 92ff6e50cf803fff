"""The exceptions that end a run with exit 2; the CLI turns them into one-line messages."""


class InputError(Exception):
    """A file that is missing, truncated or not what it claims to be."""

    def __init__(self, path: object, problem: str) -> None:
        # Both in args so the error survives pickling across worker processes.
        super().__init__(str(path), problem)
        self.path = str(path)
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


class InfraError(Exception):
    """The machinery failed (qemu missing, no agent prompt, a build step failed)."""
