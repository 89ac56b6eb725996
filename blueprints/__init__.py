"""Sample route families written in code: users (a forwarding family), web and mobile (backends-for-frontends).

Nothing registers them by itself: a deployment serves a family by naming it in its config,
``[gateway] blueprints = ["blueprints.users:bp"]``. The development settings (``make run``)
name all three.
"""
