"""The pure core: value objects, policies and the one error hierarchy with every code FabGuard sends.

No I/O, and no imports from the rest of FabGuard: every other layer may import ``domain``, and ``domain``
imports nothing of ours, so its decisions are tested from values alone.
"""
