"""The analytics projection, dashboard queries, alerts pushed to webhooks, and metrics."""
