"""The MODNet checkpoint: where it lives, how to download it from its mirrors and how to verify it.

Kept free of torch and Flask so every entry point (CLI, API, worker) can check or fetch the weights cheaply.
"""
