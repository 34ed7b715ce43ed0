"""`python -m limi_rollout` runs the rollout service."""

from limi_rollout.server import main

main()
