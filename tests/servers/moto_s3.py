"""A moto S3 server on 127.0.0.1 with the buckets the storage tests need.

moto runs in-process (``ThreadedMotoServer``) but is reached over real HTTP, so botocore,
aiobotocore and s3fs go through their full request path. Bucket setup uses explicit dummy
credentials; nothing here reads or needs real AWS credentials.

What moto does and does not enforce (checked against moto 5.2):

* Unsigned (anonymous) requests for objects whose ACL is not public-read get 403, so the
  public/private split is real.
* Signatures are not verified: any key/secret pair is accepted for signed requests.
* Requester pays is not implemented (no ``PutBucketRequestPayment``, no 403 without the
  ``x-amz-request-payer`` header); tests check the header is sent and accepted instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

DUMMY_KEY_ID = "testing-key-id"
DUMMY_SECRET = "testing-secret"  # a placeholder moto accepts, not a credential


@dataclass
class MotoS3:
    """Handle on a running moto S3 server and its three buckets."""

    endpoint_url: str
    server: ThreadedMotoServer = field(repr=False)
    region: str = "us-east-1"
    key_id: str = DUMMY_KEY_ID
    secret: str = field(default=DUMMY_SECRET, repr=False)
    public_bucket: str = "rasteret-public"
    private_bucket: str = "rasteret-private"
    requester_pays_bucket: str = "rasteret-requester-pays"

    def client(self) -> Any:
        """A synchronous boto3 client with the dummy credentials (for setup/inspection)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret,
        )

    def put(self, bucket: str, key: str, data: bytes, *, public: bool | None = None) -> str:
        """Upload ``data``; public-read by default only in the public bucket. Returns s3 URL."""
        if public is None:
            public = bucket == self.public_bucket
        extra = {"ACL": "public-read"} if public else {}
        self.client().put_object(Bucket=bucket, Key=key, Body=data, **extra)
        return f"s3://{bucket}/{key}"

    def stop(self) -> None:
        self.server.stop()


def start_moto_s3() -> MotoS3:
    """Start moto on a free port (port 0 lets the OS pick) and create the buckets."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    moto = MotoS3(endpoint_url=f"http://{host}:{port}", server=server)
    client = moto.client()
    client.create_bucket(Bucket=moto.public_bucket, ACL="public-read")
    client.create_bucket(Bucket=moto.private_bucket)
    client.create_bucket(Bucket=moto.requester_pays_bucket)
    return moto
