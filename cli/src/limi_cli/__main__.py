"""`python -m limi_cli` is the `limi` command."""

from limi_cli.main import main

main()
