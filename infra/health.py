"""Health of the data services, as seen by a client (used by the DAG and the dashboard)."""

from __future__ import annotations

from lakehouse.settings import Settings


def check_services(settings: Settings) -> dict[str, bool]:
    """Ask Kafka, S3, Postgres and MongoDB for real (not only whether a port is open)."""
    from infra.kafka import KafkaService
    from infra.mongo import MongoService
    from infra.postgres import PostgresService
    from infra.s3 import S3Service

    return {
        service.name: service.is_healthy()
        for service in (
            PostgresService(settings),
            S3Service(settings),
            KafkaService(settings),
            MongoService(settings),
        )
    }
