"""The embedded MongoDB-wire server: FerretDB v1.24.2 on its PostgreSQL backend.

No MongoDB server installs here from a package registry, so `lakehouse install` builds
FerretDB from its Go module (lakehouse.install.build_ferretdb) into the jars folder. It
speaks the MongoDB wire protocol to any driver (pymongo, mongosh); the compose deployment
runs a real mongod (mongo:7) in its place.

Why the PostgreSQL backend (a database `ferretdb` of the platform's Postgres, created with
the others) rather than SQLite under the platform's folder: measured here, the SQLite
backend took 25 ms per version-guarded update on a 3,000-document collection and stopped
answering during a 100-document bulk update, the PostgreSQL one 3 ms at 1,000 documents and
9 ms at 10,000. The cost is that the Mongo sink now shares Postgres's fate (a Postgres
restart is a Mongo outage too), which the sink's retry by batch covers.

FerretDB 1.24 differs from mongod where callers may notice: a multi-statement update never
returned here (both backends), and a write batch stops at its first error even when
unordered, its reply then without `n`/`nModified`. The sink therefore inserts new documents
in bulk and updates existing ones one at a time (spark/mongo_sink.py).
"""

from __future__ import annotations

from pymongo.errors import PyMongoError

from infra.base import Service, ServiceError
from lakehouse.mongo import mongo_client
from lakehouse.settings import FERRETDB_VERSION


class MongoService(Service):
    name = "mongo"
    start_timeout_s = 30.0

    def ports(self) -> dict[str, int]:
        return {"mongo_port": self.settings.mongo_port}

    def url(self) -> str:
        return self.settings.mongo_uri()

    @property
    def _state_dir(self):
        return self.data_dir / "state"

    def _binary(self) -> str:
        binary = self.settings.ferretdb_binary
        if not binary.is_file():
            raise ServiceError(
                f"The FerretDB {FERRETDB_VERSION} server is missing ({binary}): "
                "run `make install` (it builds it from its Go module)."
            )
        return str(binary)

    def prepare(self) -> None:
        self._state_dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        s = self.settings
        return [
            self._binary(),
            "--handler=postgresql",
            # the password comes from PGPASSWORD (environment): not on the command line
            f"--postgresql-url=postgres://{s.postgres_user}@{s.postgres_host}:{s.postgres_port}"
            f"/{s.ferretdb_db}",
            f"--listen-addr={s.bind_host}:{s.mongo_port}",
            # state.json (instance id) in the data folder, not the working directory
            f"--state-dir={self._state_dir}",
            "--telemetry=disable",
            "--debug-addr=-",  # no metrics/pprof HTTP port
            # INFO logs every connection and WARN dumps the reply to each unsupported command
            # (pymongo's endSessions on every client close): some 25 lines per health check
            "--log-level=ERROR",
        ]

    def environment(self) -> dict[str, str]:
        return {**super().environment(), "PGPASSWORD": self.settings.postgres_password or ""}

    def is_healthy(self) -> bool:
        client = mongo_client(self.settings, timeout_ms=1500)
        try:
            client.admin.command("ping")
        except PyMongoError:
            return False
        finally:
            client.close()
        return True

    def extra_status(self) -> dict[str, str]:
        return {"uri": self.settings.mongo_uri(), "database": self.settings.mongo_database}
