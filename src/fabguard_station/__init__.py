"""The line side of FabGuard: the station SDK and the ``fabguard-station`` command.

A distribution of its own (``station/pyproject.toml``): it imports nothing of the server (``fabguard``),
so a line PC installs it with ``httpx`` and ``cryptography`` alone (``python-pkcs11`` for ``provision
--pkcs11-module``). Its errors have their own root, ``fabguard_station.errors.FixtureError``, carrying
the server's codes. The server's distribution depends on this one; ``fabguard.fixture`` is an alias.
"""

__version__ = "0.1.0"
