"""`python -m nurture` is the `nurture` command."""

from nurture.entrypoints.cli.main import main

raise SystemExit(main())
