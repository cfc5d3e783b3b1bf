"""The `edge-agent` console script: the CLI (agent/tools/cli.py), imported here so that Ctrl-C during
start-up (imports, the config's checks: about a second) ends with a line and exit 130, not a traceback."""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it


def main() -> int:
    try:
        from agent.tools.cli import main as cli_main

        return cli_main()
    except KeyboardInterrupt:
        print("edge-agent: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
