"""Dual control: requests a second, different person approves, and the acts they run."""
