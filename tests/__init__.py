"""Frontdesk's test suite."""
