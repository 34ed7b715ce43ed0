"""limi curator service."""

import limi_core  # noqa: F401  first: it turns gRPC's fork handlers off before gRPC loads
