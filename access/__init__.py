"""Users, roles, organisation-unit scope and authentication of the HTTP API."""
