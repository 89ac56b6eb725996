"""Test doubles that stand in for real services around the gateway."""
