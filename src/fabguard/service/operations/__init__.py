"""Keeping an instance: backup, restore, and the upkeep a running server does."""
