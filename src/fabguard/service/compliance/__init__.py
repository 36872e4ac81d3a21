"""The CRA evidence pack and its index."""
