"""Which endpoints a user may make the server call: public addresses for everyone; private,
loopback and link-local ones for administrators, or for everyone when their host is trusted.
Through the API: a judge and an S3 endpoint on loopback are refused to a user, with the reason."""

from __future__ import annotations

import pytest

from tests.api.test_evaluations_api import TINY, evaluate, reviews
from tests.conftest import add_user, bearer
from tests.fine_tuned import add_fine_tuned
from tuneforge.db.tables import User
from tuneforge.errors import InvalidInput
from tuneforge.jobs.endpoints import check_endpoint
from tuneforge.settings import Settings

USER = User(username="alice", is_admin=False)
ADMIN = User(username="root", is_admin=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/v1",
        "http://localhost:11434/v1",
        "http://[::1]/v1",
        "http://[::ffff:127.0.0.1]/v1",
        "http://10.1.2.3/v1",
        "http://192.168.0.7:9000",
        "http://169.254.169.254/latest/meta-data",  # a cloud's metadata service
        "http://0.0.0.0:5432",
    ],
)
def test_private_endpoints_are_for_administrators(url: str, settings: Settings) -> None:
    with pytest.raises(InvalidInput, match="only administrators may use"):
        check_endpoint(url, USER, settings, "The judge's base_url")
    check_endpoint(url, ADMIN, settings, "The judge's base_url")


def test_public_and_trusted_endpoints_are_for_everyone(settings: Settings) -> None:
    check_endpoint("https://8.8.8.8/v1", USER, settings, "The judge's base_url")
    trusting = settings.model_copy(update={"trusted_endpoint_hosts": ["MinIO.lan", "10.1.2.3"]})
    check_endpoint("http://10.1.2.3:9000", USER, trusting, "The S3 endpoint_url")
    check_endpoint("http://minio.lan:9000", USER, trusting, "The S3 endpoint_url")
    with pytest.raises(InvalidInput, match=r"10\.1\.2\.4"):
        check_endpoint("http://10.1.2.4:9000", USER, trusting, "The S3 endpoint_url")


def test_the_api_refuses_a_users_loopback_judge_and_s3_endpoint(
    make_client, settings, tiny_adapter
) -> None:
    client = make_client(auth="local")
    alice = bearer(add_user(settings, "alice"))
    dataset = reviews(client, alice, rows=12)
    judge = {"base_url": "http://127.0.0.1:9/v1", "model": "grader"}
    spec = {"model": TINY, "dataset_id": dataset["id"], "suite": "classification"}
    refused = evaluate(client, alice, **spec, judge=judge)
    assert refused.status_code == 422
    assert refused.json()["error"]["message"].startswith(
        "The judge's base_url http://127.0.0.1:9/v1 reaches 127.0.0.1, a private or local address"
    )
    model = add_fine_tuned(settings, "alice", tiny_adapter)
    s3 = {"kind": "s3", "url": "s3://bucket", "endpoint_url": "http://169.254.169.254"}
    export = {"format": "adapter", "destination": s3}
    refused = client.post(f"/api/v1/models/{model}/exports", json=export, headers=alice)
    assert refused.status_code == 422
    assert refused.json()["error"]["message"].startswith(
        "The S3 endpoint_url http://169.254.169.254 reaches 169.254.169.254"
    )
