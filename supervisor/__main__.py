"""`python -m corral.supervisor` runs the corral CLI."""

from corral.supervisor.cli import main

main()
