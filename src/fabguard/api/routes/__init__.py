"""One router per resource; ``fabguard.api.app.create_app`` includes them in this order."""
