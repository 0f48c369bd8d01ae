"""`python -m aioworker`: the command line."""

from aioworker.cli import main

raise SystemExit(main())
