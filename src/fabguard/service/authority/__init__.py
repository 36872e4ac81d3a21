"""The CA hierarchy (IDevID and Matter), and revoking units, orders, fixtures and CAs."""
