"""Offline site agents: quota leases, the agent's own instance, and its log coming home."""
