"""Film Recovery engine: everything that touches pixels, and nothing that touches Blender.

Runs in Blender's own Python, in a separate Python with torch, and on farm/GPU nodes
without Blender. Heavy dependencies (torch, safetensors) are imported only by the
modules that need them, so `python -m ml --help` works with numpy alone.
"""

__version__ = "0.1.0"
