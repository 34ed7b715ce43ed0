"""limi's small shared library.

Importing it turns off gRPC's fork handlers (before gRPC loads, when it is imported first):
services start children with preexec_fn (sandboxes, vLLM), and those handlers can deadlock a
fork while gRPC threads are busy. Nothing in limi uses gRPC in a forked child.
"""

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
