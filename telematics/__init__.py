"""Composition root: configuration, command line, wiring of the server."""
