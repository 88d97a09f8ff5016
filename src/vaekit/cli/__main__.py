"""`python -m vaekit.cli ...`: the same as the `vaekit` command."""

from .main import main

raise SystemExit(main())
