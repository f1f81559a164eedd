"""The post-processing of a photo in torch, on batched tensors on the engine's device (a GPU worker).

The same algorithms as the numpy path of ``common/`` (``compositing.py``, ``backgrounds.py`` and the
resizes of ``pipeline.py``), written for (B, C, H, W) tensors so that a CUDA worker never brings a photo
back to the host between decoding and encoding; tested on the CPU against the numpy path.
"""
