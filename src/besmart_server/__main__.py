"""`python -m besmart_server` runs the CLI."""

from besmart_server.cli import main

main()
