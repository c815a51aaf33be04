"""Standard Webhooks signing, checked against the reference `standardwebhooks` verifier."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from outcrop.events.signing import new_secret, sign, webhook_headers

BODY = (
    b'{"version":"0","id":"a1b2c3d4","detail-type":"Batch Inference Job State Change",'
    b'"source":"aws.bedrock","detail":{"batchJobName":"nightly-1","status":"Completed"}}'
)
MSG_ID = "a1b2c3d4"


def test_known_vector() -> None:
    # The worked example published with the Standard Webhooks / Svix verification docs.
    signature = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_reference_library_verifies_our_headers() -> None:
    secret = new_secret()
    headers = webhook_headers(secret, MSG_ID, int(time.time()), BODY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == MSG_ID
    assert Webhook(secret).verify(BODY, headers)["detail"]["status"] == "Completed"


def test_signature_equals_reference_sign() -> None:
    secret = new_secret()
    timestamp = 1_724_885_910
    expected = Webhook(secret).sign(MSG_ID, datetime.fromtimestamp(timestamp, UTC), BODY)
    assert sign(secret, MSG_ID, timestamp, BODY) == expected


def test_non_utf8_body_is_signed_byte_for_byte() -> None:
    secret = new_secret()
    body = b"\xff\xfe not utf-8"
    headers = webhook_headers(secret, MSG_ID, int(time.time()), body)
    assert Webhook(secret).verify(body, headers, json_parse=False) is None


def test_tampered_body_fails() -> None:
    secret = new_secret()
    headers = webhook_headers(secret, MSG_ID, int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"Completed", b"Failed"), headers)


def test_tampered_id_fails() -> None:
    secret = new_secret()
    headers = webhook_headers(secret, MSG_ID, int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, headers | {"webhook-id": "other"})


def test_wrong_secret_fails() -> None:
    headers = webhook_headers(new_secret(), MSG_ID, int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


def test_old_timestamp_fails() -> None:
    # The reference verifier tolerates five minutes of skew; ten minutes is a replay.
    secret = new_secret()
    headers = webhook_headers(secret, MSG_ID, int(time.time()) - 600, BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, headers)


def test_new_secret_shape() -> None:
    secrets = {new_secret() for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) >= 24


@pytest.mark.parametrize(
    "secret",
    ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_not base64!", "whsk_MfKQ9r8GKYqrTwjU"],
)
def test_bad_secrets_are_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="webhook secret"):
        sign(secret, MSG_ID, 0, BODY)
