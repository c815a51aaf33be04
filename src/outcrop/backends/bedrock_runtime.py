"""The `bedrock` backend: on-demand Bedrock models through the runtime's Converse and InvokeModel."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import boto3
import orjson
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)

from outcrop.backends._bedrock_bodies import (
    Malformed,
    converse_params,
    invoke_body,
    parse_converse_answer,
    parse_invoke_answer,
)
from outcrop.backends.base import (
    BackendUnavailable,
    CatalogError,
    int_options,
    require_option,
    timeout_option,
)
from outcrop.formats.base import InferenceRequest, InferenceResponse, RecordError

NAME = "bedrock"
INVOKE_FORMATS = ("llama", "mistral", "titan-text", "titan-embed")
_FORMAT_KIND = {
    "llama": "completion",
    "mistral": "completion",
    "titan-text": "completion",
    "titan-embed": "embedding",
}
_STR_OPTIONS = (
    "model_id",
    "region",
    "endpoint_url",
    "profile",
    "access_key_id_env",
    "secret_access_key_env",
    "session_token_env",
    "invoke_format",
)
_INT_OPTIONS = {"max_concurrency": (8, 1), "max_retries": (4, 0)}  # name: (default, minimum)
_OPTIONS = frozenset(_STR_OPTIONS) | frozenset(_INT_OPTIONS) | {"timeout_s"}
# Bedrock's error names -> the record's errorCode, whose meanings the batch output defines.
_ERROR_CODES = {
    "ThrottlingException": 429,
    "ServiceQuotaExceededException": 429,
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ModelNotReadyException": 503,
    "ServiceUnavailableException": 503,
    "ModelErrorException": 502,
    "InternalServerException": 500,
}


class BedrockRuntimeBackend:
    """Sends each InferenceRequest to Bedrock runtime with boto3, one API call per record.

    Chat requests (and completions when no `invoke_format` is set) go to Converse, which takes the
    same messages for every model. Completions and embeddings go to InvokeModel with a body built
    for the family named by `invoke_format`. Retries (throttling, 5xx, dropped connections) are
    botocore's own, in adaptive mode so that a throttled client also slows its sending rate; an
    error left after them becomes a RecordError with the upstream message.

    boto3 is blocking, so calls run on a private pool of `max_concurrency` threads: the pool is the
    concurrency bound, and long calls never starve the event loop's default executor, which the
    engine uses for storage I/O. The client is created on first use and shared by the threads.
    Missing credentials or an unknown profile fail the whole job (BackendUnavailable).
    """

    max_batch_size = 1

    def __init__(
        self,
        *,
        model_id: str,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        profile: str | None = None,
        credentials: Mapping[str, str] | None = None,
        max_concurrency: int = 8,
        max_retries: int = 4,
        timeout_s: float = 60.0,
        invoke_format: str | None = None,
    ) -> None:
        self.model_id = model_id
        self.region = region
        self.endpoint_url = endpoint_url
        self.profile = profile
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.invoke_format = invoke_format
        self._credentials = dict(credentials or {})
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> BedrockRuntimeBackend:
        """Build from a catalog entry's options; raises CatalogError for anything invalid."""
        unknown = sorted(set(options) - _OPTIONS)
        if unknown:
            raise CatalogError(f"backend '{NAME}' has unknown option(s): {', '.join(unknown)}")
        model_id = require_option(options, "model_id", str, NAME)
        strings = {
            name: require_option(options, name, str, NAME)
            for name in _STR_OPTIONS
            if name in options
        }
        for name, value in strings.items():
            if not value:
                raise CatalogError(f"backend '{NAME}' option '{name}' must not be empty")
        if "endpoint_url" in strings:
            parts = urlsplit(strings["endpoint_url"])
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise CatalogError(f"backend '{NAME}' option 'endpoint_url' must be an http(s) URL")
        invoke_format = strings.get("invoke_format")
        if invoke_format is not None and invoke_format not in INVOKE_FORMATS:
            raise CatalogError(
                f"backend '{NAME}' option 'invoke_format' must be one of {', '.join(INVOKE_FORMATS)}"
            )
        counts = int_options(options, _INT_OPTIONS, NAME)
        timeout_s = timeout_option(options, NAME)
        return cls(
            model_id=model_id,
            region=strings.get("region", "us-east-1"),
            endpoint_url=strings.get("endpoint_url"),
            profile=strings.get("profile"),
            credentials=_credentials_from_env(strings),
            timeout_s=float(timeout_s),
            invoke_format=invoke_format,
            **counts,
        )

    async def invoke(
        self, requests: Sequence[InferenceRequest]
    ) -> list[InferenceResponse | RecordError]:
        return list(await asyncio.gather(*(self._invoke_one(request) for request in requests)))

    async def aclose(self) -> None:
        # Calls still running finish in their threads; nobody waits for their answers any more.
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    async def _invoke_one(self, request: InferenceRequest) -> InferenceResponse | RecordError:
        target = self._target(request)
        if isinstance(target, RecordError):
            return target
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.max_concurrency, thread_name_prefix="outcrop-bedrock"
            )
        call = self._converse if target == "converse" else self._invoke_model
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._timed, call, request)

    def _target(self, request: InferenceRequest) -> str | RecordError:
        """ "converse" or the InvokeModel family for this request, or why it cannot be sent."""
        if request.kind == "chat":
            return "converse"
        if self.invoke_format is None:
            if request.kind == "completion":
                return "converse"  # the prompt becomes the user's turn, as any model accepts
            return RecordError(
                400, f"backend '{NAME}' needs option 'invoke_format' for embedding requests"
            )
        if _FORMAT_KIND[self.invoke_format] != request.kind:
            return RecordError(
                400, f"model {self.model_id} takes {self.invoke_format} bodies, not {request.kind}"
            )
        return self.invoke_format

    def _timed(
        self, call: Callable[[InferenceRequest], InferenceResponse], request: InferenceRequest
    ) -> InferenceResponse | RecordError:
        started = time.monotonic()
        try:
            response = call(request)
        except ClientError as exc:
            return _client_error(exc)
        except (NoCredentialsError, PartialCredentialsError, ProfileNotFound) as exc:
            raise BackendUnavailable(f"backend '{NAME}' has no usable credentials: {exc}") from exc
        except ParamValidationError as exc:  # botocore's own check of the call, before sending
            return RecordError(400, str(exc))
        except (ReadTimeoutError, ConnectTimeoutError) as exc:
            return RecordError(504, f"Bedrock runtime did not answer in time: {exc}")
        except BotoCoreError as exc:
            return RecordError(502, f"cannot reach Bedrock runtime: {exc}")
        except (ValueError, LookupError, TypeError, AttributeError, Malformed) as exc:
            return RecordError(502, f"Bedrock runtime answered with a malformed body: {exc!r}")
        return replace(response, latency_ms=round((time.monotonic() - started) * 1000))

    def _runtime(self) -> Any:
        with self._client_lock:
            if self._client is None:
                keys = self._credentials
                session = boto3.Session(
                    aws_access_key_id=keys.get("aws_access_key_id"),
                    aws_secret_access_key=keys.get("aws_secret_access_key"),
                    aws_session_token=keys.get("aws_session_token"),
                    profile_name=self.profile,
                )
                self._client = session.client(
                    "bedrock-runtime",
                    region_name=self.region,
                    endpoint_url=self.endpoint_url,
                    config=Config(
                        # botocore's plain "max_attempts" would not count the first try.
                        retries={"total_max_attempts": self.max_retries + 1, "mode": "adaptive"},
                        read_timeout=self.timeout_s,
                        connect_timeout=min(self.timeout_s, 10.0),
                        max_pool_connections=self.max_concurrency,
                    ),
                )
            return self._client

    def _converse(self, request: InferenceRequest) -> InferenceResponse:
        answer = self._runtime().converse(**converse_params(self.model_id, request))
        return parse_converse_answer(request, answer)

    def _invoke_model(self, request: InferenceRequest) -> InferenceResponse:
        family = self.invoke_format
        assert family is not None
        answer = self._runtime().invoke_model(
            modelId=self.model_id,
            body=orjson.dumps(invoke_body(family, request)),
            contentType="application/json",
            accept="application/json",
        )
        body = orjson.loads(answer["body"].read())
        if not isinstance(body, dict):
            raise Malformed("the body is not a JSON object")
        headers = answer["ResponseMetadata"].get("HTTPHeaders", {})
        return parse_invoke_answer(family, request, body, headers)


def _client_error(exc: ClientError) -> RecordError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = str(error.get("Message") or exc)
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    mapped = _ERROR_CODES.get(code)
    if mapped is None:
        mapped = status if isinstance(status, int) and 400 <= status < 600 else 502
    return RecordError(mapped, f"{code or 'Error'}: {message}")


def _credentials_from_env(strings: Mapping[str, str]) -> dict[str, str]:
    """boto3.Session keyword arguments for keys named by the *_env options, read now."""
    named = {
        "aws_access_key_id": strings.get("access_key_id_env"),
        "aws_secret_access_key": strings.get("secret_access_key_env"),
        "aws_session_token": strings.get("session_token_env"),
    }
    if (named["aws_access_key_id"] is None) != (named["aws_secret_access_key"] is None):
        raise CatalogError(
            f"backend '{NAME}' options 'access_key_id_env' and 'secret_access_key_env' go together"
        )
    if named["aws_session_token"] is not None and named["aws_access_key_id"] is None:
        raise CatalogError(f"backend '{NAME}' option 'session_token_env' needs the key options")
    if named["aws_access_key_id"] is not None and "profile" in strings:
        raise CatalogError(f"backend '{NAME}' takes either 'profile' or key options, not both")
    credentials: dict[str, str] = {}
    for argument, variable in named.items():
        if variable is None:
            continue
        value = os.environ.get(variable)
        if not value:
            raise CatalogError(f"backend '{NAME}': environment variable {variable} is not set")
        credentials[argument] = value
    return credentials


__all__ = [
    "INVOKE_FORMATS",
    "BedrockRuntimeBackend",
    "converse_params",
    "invoke_body",
    "parse_invoke_answer",
]
