"""The engine's torch side: every module that needs torch, and only those.

Models, training, inference, prediction, checkpoints and the per-shot model scores live here; the
rest of `ml/` runs on numpy, OpenImageIO and OpenColorIO alone, so Blender's own Python can import
it. Nothing here is imported at `ml`'s top level, and nothing outside this package imports torch
(tests/test_architecture.py checks both).
"""
