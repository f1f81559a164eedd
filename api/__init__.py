"""The HTTP API (Flask); never imports torch."""
