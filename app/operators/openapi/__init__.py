"""The gateway's OpenAPI 3.1 document, its endpoint and its CLI command (route schemas are app.openapi's)."""
