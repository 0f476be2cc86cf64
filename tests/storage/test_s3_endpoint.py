"""The test S3 server (tests/conftest.py `s3_endpoint`, moto) is as atomic as S3 where the
registry relies on it: of racing `If-None-Match: *` creates of one key, exactly one wins."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
import botocore.exceptions


def test_racing_conditional_creates_of_one_key_have_exactly_one_winner(s3_endpoint: str) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    bucket = f"race-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)

    def create(key: str, writer: int) -> bool:
        client = boto3.client("s3", endpoint_url=s3_endpoint)
        try:
            client.put_object(Bucket=bucket, Key=key, Body=str(writer).encode(), IfNoneMatch="*")
        except botocore.exceptions.ClientError as exc:
            assert exc.response["Error"]["Code"] in ("PreconditionFailed", "412")
            return False
        return True

    keys = [f"claims/{i}" for i in range(20)]
    with ThreadPoolExecutor(8) as pool:
        won = {key: sum(pool.map(lambda w, key=key: create(key, w), range(8))) for key in keys}
    assert won == dict.fromkeys(keys, 1)
