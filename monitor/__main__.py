"""`python -m monitor` is the `vigil` command."""

from monitor.cli import main

main()
