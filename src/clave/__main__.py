"""`python -m clave` runs the command line."""

from clave.cli import main

raise SystemExit(main())
