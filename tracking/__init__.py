"""Device registry, live state and the dispatcher-facing device API."""
