"""`python -m ttsr.train`: see `ttsr.train.cli`."""

from ttsr.train.cli import main

raise SystemExit(main())
