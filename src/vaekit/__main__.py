"""`python -m vaekit ...`: the same as the `vaekit` command."""

from .cli import main

raise SystemExit(main())
