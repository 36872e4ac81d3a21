"""Hand-off to device clouds (AWS IoT, Azure DPS) and signed device manifests."""
