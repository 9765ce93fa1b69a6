"""`python -m supervisor` runs the corral CLI."""

from supervisor.cli import main

main()
