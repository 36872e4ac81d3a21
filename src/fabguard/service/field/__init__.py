"""Field genuineness checks of devices after the factory."""
