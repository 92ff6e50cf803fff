"""The one exception readers raise for bad input; the CLI turns it into a one-line message and exit 2."""


class InputError(Exception):
    """A file that is missing, truncated or not what it claims to be."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


class InfraError(Exception):
    """The machinery failed (qemu missing, no agent prompt, a build step failed): exit 2."""
