"""Encrypted firmware: releases, their sealing keys, and release to provisioned units."""
