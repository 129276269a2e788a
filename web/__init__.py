"""The dispatcher's live map page: static files, the vendored map libraries, the basemap and its settings."""
