"""Royalty statements and feature licences."""
