"""The HTTP interface, the calls it holds, and the processes that serve it."""
