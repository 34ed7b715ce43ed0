"""`python -m limi_trainer` runs the trainer service."""

from limi_trainer.server import main

main()
