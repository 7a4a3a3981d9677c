"""Runnable examples of the gateway's Python API and sideband (see README.md here); the tests run them."""
