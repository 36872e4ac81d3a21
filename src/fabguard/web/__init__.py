"""The dashboard: a single static page that reads the REST API and follows the event stream.

Static files only (``STATIC_DIR``), served by ``fabguard.api``; it imports nothing of ours.
"""

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"

__all__ = ["STATIC_DIR"]
