"""Demo backend services (users, orders, catalog) that `make run` puts behind the gateway."""
