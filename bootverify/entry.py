"""The `bootverify` command (and `python -m bootverify`): signals are taken before anything else
is imported (about a second on a busy machine), so that Ctrl-C or SIGTERM at any moment stops
the run cleanly: a script's background job inherits SIGINT ignored, which would lose it, and an
interrupt during the imports would otherwise end in a traceback."""

from __future__ import annotations

import signal
import sys

from bootverify.errors import Terminated


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signum)


def main() -> int:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _terminate)
    try:
        from bootverify.cli import main as cli_main
    except Terminated as e:
        print(f"bootverify: terminated (signal {e.signum})", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("bootverify: interrupted", file=sys.stderr)
        return 130
    return cli_main()
