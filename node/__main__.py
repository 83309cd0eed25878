"""`python -m node ...` is the `medledger` command."""

from node.cli import main

main()
