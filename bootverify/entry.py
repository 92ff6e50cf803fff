"""The `bootverify` command (and `python -m bootverify`): signals are taken before anything else
is imported (about a second on a busy machine), so that Ctrl-C or SIGTERM at any moment stops
the run cleanly: a script's background job inherits SIGINT ignored, which would lose it, and an
interrupt during the imports would otherwise end in a traceback."""

from __future__ import annotations

import signal
import sys

from bootverify.errors import Terminated, interrupt_status, signal_name


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signum)


def main() -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _terminate)
    try:
        from bootverify.cli import main as cli_main
    except KeyboardInterrupt as e:
        print(f"bootverify: interrupted by {signal_name(e)}", file=sys.stderr)
        return interrupt_status(e)
    return cli_main()
