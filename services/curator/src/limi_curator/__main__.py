"""`python -m limi_curator` runs the curator service."""

from limi_curator.server import main

main()
