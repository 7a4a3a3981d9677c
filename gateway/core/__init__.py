"""The sans-I/O core: the Realtime conversation as plain objects, no sockets, tasks or clock."""
