"""What the gateway tells about itself: metrics (and their batching), logs, tracing (and its OpenTelemetry bridge).

Import the modules (``from app.observability import metrics``): this package imports nothing itself,
so every layer may use it without importing another.
"""
