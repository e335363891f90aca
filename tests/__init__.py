"""The test suite; ``VECTORS`` is where its published and interop test vectors live."""

from pathlib import Path

VECTORS = Path(__file__).resolve().parent / "vectors"
