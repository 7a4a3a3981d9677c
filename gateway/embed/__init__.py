"""The pieces behind :mod:`gateway.api` (the public Python API): use that module, not these."""
