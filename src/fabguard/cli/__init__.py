"""The ``fabguard`` command: one module per command group, each command registered through ``common``.

It may import any layer but ``fabguard.store`` and ``fabguard.analytics``, which it reaches only through
``fabguard.service``; the web stack (``fabguard.api``) is imported only by the commands that serve, for
start-up time.
"""
