"""What operators use: the CLI and config check, the route inventory, the metrics scrape, OpenAPI, the status page.

The top layer under the factory: these read every other layer; nothing below imports them.
"""
