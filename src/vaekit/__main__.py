"""`python -m vaekit ...`: the same as the `vaekit` command."""

from .cli.main import main

raise SystemExit(main())
