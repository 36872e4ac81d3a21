"""FabGuard: quota-bound, test-gated device identity for contract manufacturing."""

__version__ = "0.1.0"
__all__ = ["__version__"]
