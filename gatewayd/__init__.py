"""gatewayd: an SMS short-code campaign gateway speaking SMPP 3.4, built on trio."""

__version__ = "0.1.0"
