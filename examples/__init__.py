"""Example code that ships with Frontdesk: demo backends and usage samples."""
