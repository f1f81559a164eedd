"""Code shared by the API, the worker and the CLI; imports neither torch nor Flask."""
