"""Secrets stay secret: after a real job (S3 storage, signed webhooks), none of the configured
secret values shows up in the server log, /metrics, API answers, or the CLI's config views.

The root key pair is given through OUTCROP_ROOT_ACCESS_KEY_ID/SECRET, so `outcrop serve` does
not print the secret in its start banner (it does once, by design, when it generates a key on
a first start); `outcrop credentials` prints it on purpose and is not checked here.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from moto.server import ThreadedMotoServer

from outcrop.events.signing import new_secret
from tests.acceptance.buckets import S3Buckets
from tests.acceptance.raw import RawClient, create_account, error_of
from tests.acceptance.webhook_receiver import WebhookReceiver
from tests.jobs import ROLE, wait_for, wait_for_terminal
from tests.security.conftest import Servers
from tests.server import OutcropServer

RECORD = {
    "recordId": "R1",
    "modelInput": {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hello"}],
    },
}


@dataclass(frozen=True)
class Secrets:
    root_secret: str
    webhook_secret: str
    s3_secret: str

    def env(self) -> dict[str, str]:
        return {
            "OUTCROP_ROOT_ACCESS_KEY_ID": "AKOCSECRETSTEST00001",
            "OUTCROP_ROOT_SECRET_ACCESS_KEY": self.root_secret,
            "OUTCROP_EVENT_WEBHOOK_SECRET": self.webhook_secret,
            "OUTCROP_S3_SECRET_ACCESS_KEY": self.s3_secret,
        }

    def values(self) -> dict[str, str]:
        """Every value that must not leak, the webhook key also without its whsec_ prefix."""
        return {
            "root secret": self.root_secret,
            "webhook secret": self.webhook_secret,
            "webhook key": self.webhook_secret.removeprefix("whsec_"),
            "S3 secret": self.s3_secret,
        }


def assert_no_secret(text: str, where: str, values: dict[str, str]) -> None:
    leaked = [name for name, value in values.items() if value in text]
    assert not leaked, f"{', '.join(leaked)} found in {where}"


@dataclass
class Deployment:
    server: OutcropServer
    secrets: Secrets
    env: dict[str, str]  # what the server was started with: the CLI runs with the same
    account_secret: str
    receiver: WebhookReceiver
    bucket: str


@pytest.fixture(scope="module")
def deployment(module_servers: Servers) -> Iterator[Deployment]:
    values = Secrets(
        root_secret="root-" + secrets.token_hex(20),
        webhook_secret=new_secret(),
        s3_secret="s3-" + secrets.token_hex(20),
    )
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    receiver = WebhookReceiver(secret=values.webhook_secret).start()
    try:
        host, port = moto.get_host_and_port()
        buckets = S3Buckets(f"http://{host}:{port}")
        env = {
            **buckets.server_env(),  # moto accepts any key pair; ours is the one to watch
            **values.env(),
            "OUTCROP_EVENT_WEBHOOK_URL": receiver.url,
            "OUTCROP_LOG_LEVEL": "debug",  # the most the log will ever say
        }
        server = module_servers.start("secrets", **env)
        other = create_account(server, "secrets-other")
        bucket = buckets.create("secrets")
        buckets.put(bucket, "in/records.jsonl", orjson.dumps(RECORD) + b"\n")
        yield Deployment(server, values, env, other.secret_access_key, receiver, bucket)
        buckets.close()
    finally:
        receiver.stop()
        moto.stop()


@pytest.fixture(scope="module")
def finished_job(deployment: Deployment) -> dict[str, Any]:
    """A job run end to end: S3 reads and writes, events delivered and signed."""
    server = deployment.server
    bedrock = server.client(
        aws_access_key_id="AKOCSECRETSTEST00001",
        aws_secret_access_key=deployment.secrets.root_secret,
    )
    bucket = deployment.bucket
    arn = bedrock.create_model_invocation_job(
        jobName="secrets-job",
        roleArn=ROLE,
        modelId="outcrop.echo-v1",
        inputDataConfig={"s3InputDataConfig": {"s3Uri": f"s3://{bucket}/in/records.jsonl"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{bucket}/out/"}},
    )["jobArn"]
    job: dict[str, Any] = wait_for_terminal(bedrock, arn)
    assert job["status"] == "Completed", job
    # The webhook receiver verifies each signature with the secret: delivery proves its use.
    wait_for(lambda: "Completed" in deployment.receiver.statuses(arn), timeout=30)
    assert not deployment.receiver.rejected
    return job


def test_the_server_log_has_no_secrets(deployment: Deployment, finished_job: Any) -> None:
    log = deployment.server.log()
    assert "secret access key: (run `outcrop credentials` to show it)" in log
    assert "AKOCSECRETSTEST00001" in log  # the key id is no secret, and shows the log is read
    assert_no_secret(
        log,
        "the server log",
        {**deployment.secrets.values(), "account secret": deployment.account_secret},
    )


def test_metrics_have_no_secrets(deployment: Deployment, finished_job: Any) -> None:
    import httpx

    metrics = httpx.get(f"{deployment.server.endpoint}/metrics").text
    assert "outcrop" in metrics
    assert_no_secret(metrics, "/metrics", deployment.secrets.values())


def test_api_answers_have_no_secrets(deployment: Deployment, finished_job: Any) -> None:
    server = deployment.server
    values = {**deployment.secrets.values(), "account secret": deployment.account_secret}
    root = RawClient(server.endpoint, "AKOCSECRETSTEST00001", deployment.secrets.root_secret)
    forged = RawClient(server.endpoint, "AKOCSECRETSTEST00001", "not-the-secret")
    unknown = RawClient(server.endpoint, "AKOCNOSUCHKEY0000000", deployment.secrets.root_secret)
    try:
        errors = {
            "bad signature": forged.list(),
            "unknown key": unknown.list(),
            "unsigned": root.request("GET", "/model-invocation-jobs", sign=False),
            "validation": root.create({"jobName": "bad name"}),
            "not found": root.get("abcdefghij12"),
        }
        for what, response in errors.items():
            status, code, _message = error_of(response)
            assert status >= 400 and code, (what, status)
            assert_no_secret(response.text + str(response.headers), f"the {what} error", values)
        answers = {
            "job": root.get(finished_job["jobArn"]),
            "list": root.list(),
            "events": root.request("GET", "/events"),
            "deliveries": root.request("GET", "/event-deliveries"),
        }
        for what, response in answers.items():
            assert response.status_code == 200, (what, response.text)
            assert_no_secret(response.text, f"the {what} answer", values)
    finally:
        for client in (root, forged, unknown):
            client.close()


@pytest.mark.parametrize(
    ("command", "masked"),
    [
        (["config", "show"], True),
        (["config", "show", "--output", "json"], True),
        (["events", "rules"], False),  # the table shows no secret column at all
        (["events", "rules", "--output", "json"], True),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_cli_views_of_the_configuration_have_no_secrets(
    deployment: Deployment, command: list[str], masked: bool
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTCROP_")}
    env |= deployment.env | {"OUTCROP_DATA_DIR": str(deployment.server.data_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "outcrop", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    shown = done.stdout + done.stderr
    if masked:
        assert "****" in shown, shown  # the secrets are there, masked
    assert_no_secret(shown, f"`outcrop {' '.join(command)}`", deployment.secrets.values())
