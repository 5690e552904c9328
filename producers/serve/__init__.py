"""`cutout serve`: the HTTP service other teams integrate with (intake, status, OpenAPI,
Prometheus metrics). app: the routes; models: the bodies; auth, idempotency, limits, errors:
one concern each; intake: the checks and the enqueueing; metrics: the Prometheus collector;
command: the `cutout serve` command (imported by producers.cli)."""

__all__: list[str] = []
