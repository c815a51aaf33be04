"""`python -m outcrop` runs the CLI."""

from outcrop.cli import main

main()
