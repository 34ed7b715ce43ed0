"""`python -m limi_sandbox` runs the sandbox service."""

from limi_sandbox.server import main

main()
