"""The ``fabguard`` command."""
