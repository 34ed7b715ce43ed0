"""`python -m limi_evaluator` runs the evaluator service."""

from limi_evaluator.server import main

main()
