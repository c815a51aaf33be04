"""An OpenAPI 3.0 description of the seven Bedrock routes, generated from botocore's service model.

Generating it from the same shapes that validate requests (`outcrop.api.shapes`) keeps the
document and the server from drifting apart. What the server adds beyond the model is described
too: the SigV4 errors (403), the body size limit (413) and the x-amzn-ErrorType header.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import botocore.session
import orjson
from botocore.model import ListShape, OperationModel, ServiceModel, Shape, StructureShape
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from outcrop.api.patterns import ecma_pattern
from outcrop.api.shapes import safe_pattern

OPERATIONS = (
    "CreateModelInvocationJob",
    "GetModelInvocationJob",
    "ListModelInvocationJobs",
    "StopModelInvocationJob",
    "TagResource",
    "UntagResource",
    "ListTagsForResource",
)

# Errors the server raises on every route, whatever the operation models: SigV4 failures are
# 403s with their own codes, the rate limiter answers 429 before any operation runs, and the
# size limits answer 413 (body) and 431 (headers).
_AUTH_ERRORS = (
    "AccessDeniedException",
    "MissingAuthenticationTokenException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
)
_ALWAYS: dict[int, tuple[str, ...]] = {
    400: ("ValidationException",),
    403: _AUTH_ERRORS,
    413: ("ValidationException",),  # limits of the HTTP layer, on every route
    429: ("ThrottlingException",),
    431: ("ValidationException",),
    500: ("InternalServerException",),
}
_STATUS_TEXT = {
    400: "The request is invalid (ValidationException), conflicts with the job's state "
    "(ConflictException) or exceeds a quota.",
    403: "The signature is missing, invalid or expired, the access key is unknown, or the "
    "resource belongs to another account.",
    404: "No such job in this account and region.",
    413: "The request body is larger than OUTCROP_MAX_REQUEST_BYTES (ValidationException).",
    431: "The request headers are larger than OUTCROP_MAX_HEADER_BYTES (ValidationException).",
    429: "This account exceeded its request rate (OUTCROP_RATE_LIMIT_RPS); retry with backoff.",
    500: "An internal error; the server log has the details under the request id.",
}


@functools.cache
def _service() -> ServiceModel:
    model: ServiceModel = botocore.session.get_session().get_service_model("bedrock")
    return model


# -- shapes -> schemas ----------------------------------------------------------------------


def _ref(shape: Shape) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{shape.name}"}


class _SchemaBuilder:
    """Converts shapes into named component schemas, following references once each."""

    def __init__(self, output_only: set[str]) -> None:
        self.schemas: dict[str, dict[str, Any]] = {}
        self.output_only = output_only

    def ref(self, shape: Shape) -> dict[str, Any]:
        if shape.name not in self.schemas:
            self.schemas[shape.name] = {}  # reserve the name first: shapes may recurse
            self.schemas[shape.name] = self.schema(shape)
        return _ref(shape)

    def schema(self, shape: Shape) -> dict[str, Any]:
        meta = shape.metadata
        schema: dict[str, Any] = {}
        doc = _summary(shape.documentation)
        if doc:
            schema["description"] = doc
        kind = shape.type_name
        if kind == "structure":
            assert isinstance(shape, StructureShape)
            members = {
                name: member
                for name, member in shape.members.items()
                if "location" not in member.serialization  # path, query and header members
            }
            schema["type"] = "object"
            schema["properties"] = {name: self.ref(member) for name, member in members.items()}
            required = [name for name in meta.get("required", []) if name in members]
            if required:
                schema["required"] = required
            if meta.get("union"):
                schema["minProperties"] = 1
                schema["maxProperties"] = 1
            if shape.name in self.output_only:
                # What this server sends is exactly the model's members; nothing else.
                schema["additionalProperties"] = False
        elif kind == "list":
            assert isinstance(shape, ListShape)
            schema["type"] = "array"
            schema["items"] = self.ref(shape.member)
            if "min" in meta:
                schema["minItems"] = meta["min"]
            if "max" in meta:
                schema["maxItems"] = meta["max"]
        elif kind == "string":
            schema.update(_string_schema(meta))
        elif kind in ("integer", "long"):
            schema["type"] = "integer"
            schema["format"] = "int32" if kind == "integer" else "int64"
            if "min" in meta:
                schema["minimum"] = meta["min"]
            if "max" in meta:
                schema["maximum"] = meta["max"]
        elif kind == "timestamp":
            schema.update(type="string", format="date-time")
        elif kind == "boolean":
            schema["type"] = "boolean"
        else:  # not used by the batch operations; described loosely rather than wrongly
            schema["description"] = f"{kind} (botocore shape {shape.name})"
        return schema


def _string_schema(meta: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if "enum" in meta:
        schema["enum"] = list(meta["enum"])
        return schema
    if "min" in meta:
        schema["minLength"] = meta["min"]
    if "max" in meta:
        schema["maxLength"] = meta["max"]
    if "pattern" in meta:
        # The linear-time equivalent where the model's own backtracks: validators and data
        # generators that read this document use backtracking engines too.
        pattern = ecma_pattern(safe_pattern(meta["pattern"]))
        if pattern is not None:
            schema["pattern"] = pattern
        else:
            schema["x-aws-pattern"] = meta["pattern"]  # still enforced, as a full match
    if meta.get("sensitive"):
        schema["x-sensitive"] = True
    return schema


def _summary(documentation: str | None) -> str:
    """The model's HTML documentation reduced to plain text, first sentence or two."""
    if not documentation:
        return ""
    text = re.sub(r"<[^>]+>", "", documentation)
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def _walk(shape: Shape, seen: set[str]) -> set[str]:
    if shape.name in seen:
        return seen
    seen.add(shape.name)
    if isinstance(shape, StructureShape):
        for member in shape.members.values():
            _walk(member, seen)
    elif isinstance(shape, ListShape):
        _walk(shape.member, seen)
    return seen


# -- operations ---------------------------------------------------------------------------


def _parameter(name: str, member: Shape, builder: _SchemaBuilder) -> dict[str, Any]:
    location = member.serialization["location"]
    wire_name = member.serialization.get("name", name)
    schema = builder.schema(member)
    description = schema.pop("description", "")
    parameter: dict[str, Any] = {"name": wire_name, "schema": schema}
    if location == "uri":
        parameter["in"] = "path"
        parameter["required"] = True
        schema["minLength"] = max(1, schema.get("minLength", 1))
        description = (
            "The job's 12-character id or its full ARN. Percent-encode the ARN as one path "
            "segment (`:` as %3A, `/` as %2F), as the AWS SDKs do."
        )
    else:
        parameter["in"] = "query"
        parameter["required"] = False
        if member.type_name == "timestamp":
            description = (description + " ISO-8601, e.g. 2024-01-01T00:00:00Z.").strip()
    if description:
        parameter["description"] = description
    return parameter


def _error_response(status: int, codes: tuple[str, ...]) -> dict[str, Any]:
    message = {"type": "string", "description": "What went wrong, in words."}
    body: dict[str, Any] = {
        "type": "object",
        "required": ["message"],
        "properties": {"message": message},
    }
    if "TooManyTagsException" in codes:
        body["properties"]["resourceName"] = {"type": "string"}
    return {
        "description": _STATUS_TEXT[status] + " Error codes: " + ", ".join(codes) + ".",
        "headers": {
            "x-amzn-ErrorType": {
                "description": "The error code, which AWS SDKs turn into a typed exception.",
                "required": True,
                "schema": {"type": "string", "enum": list(codes)},
            },
            "x-amzn-RequestId": _request_id_header(),
        },
        "content": {"application/json": {"schema": body}},
    }


def _request_id_header() -> dict[str, Any]:
    return {
        "description": "The request id; the server log carries it too.",
        "required": True,
        "schema": {"type": "string", "minLength": 1},
    }


def _errors_of(op: OperationModel) -> dict[str, dict[str, Any]]:
    by_status: dict[int, list[str]] = {s: list(codes) for s, codes in _ALWAYS.items()}
    for error in op.error_shapes:
        status = int(error.metadata.get("error", {}).get("httpStatusCode", 400))
        codes = by_status.setdefault(status, [])
        if error.name not in codes:
            codes.append(error.name)
    return {
        str(status): _error_response(status, tuple(codes))
        for status, codes in sorted(by_status.items())
    }


def _operation(op: OperationModel, builder: _SchemaBuilder) -> dict[str, Any]:
    input_shape = op.input_shape
    assert isinstance(input_shape, StructureShape)
    located = {n: m for n, m in input_shape.members.items() if "location" in m.serialization}
    body_members = set(input_shape.members) - set(located)
    operation: dict[str, Any] = {
        "operationId": op.name,
        "summary": op.name,
        "description": _summary(op.documentation),
        "tags": ["Bedrock batch inference"],
        "parameters": [_parameter(n, m, builder) for n, m in located.items()],
    }
    if body_members:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": builder.ref(input_shape)}},
        }
    output = op.output_shape
    assert output is not None
    operation["responses"] = {
        "200": {
            "description": "Success.",
            "headers": {"x-amzn-RequestId": _request_id_header()},
            "content": {"application/json": {"schema": builder.ref(output)}},
        },
        **_errors_of(op),
    }
    if not operation["parameters"]:
        del operation["parameters"]
    return operation


def _document() -> dict[str, Any]:
    service = _service()
    ops = [service.operation_model(name) for name in OPERATIONS]
    input_shapes: set[str] = set()
    for op in ops:
        assert op.input_shape is not None
        _walk(op.input_shape, input_shapes)
    output_only: set[str] = set()
    for op in ops:
        assert op.output_shape is not None
        output_only |= _walk(op.output_shape, set()) - input_shapes
    builder = _SchemaBuilder(output_only)
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.http["requestUri"], {})[op.http["method"].lower()] = _operation(
            op, builder
        )
    metadata = service.metadata
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Outcrop: Amazon Bedrock batch inference (model invocation jobs)",
            "version": str(metadata.get("apiVersion", "")),
            "description": (
                "The Bedrock control-plane operations for batch inference, generated from "
                "botocore's service model for `bedrock`. Patterns are full matches (as AWS "
                "applies them); a pattern that cannot be written in ECMA 262 is kept under "
                "`x-aws-pattern` and still enforced. Absent members are omitted from "
                "responses, never sent as null. Every request must be signed with AWS "
                "Signature Version 4 (service `bedrock`)."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(builder.schemas.items())),
            "securitySchemes": {
                "sigv4": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": (
                        "AWS Signature Version 4 (AWS4-HMAC-SHA256) over the method, raw path, "
                        "query, signed headers and body hash, with credential scope "
                        "`<date>/<region>/bedrock/aws4_request` and an X-Amz-Date header "
                        "within OUTCROP_CLOCK_SKEW_SECONDS of the server's clock. Any AWS SDK "
                        "pointed at this endpoint signs this way."
                    ),
                    "x-amazon-apigateway-authtype": "awsSigv4",
                }
            },
        },
        "security": [{"sigv4": []}],
    }


@functools.cache
def openapi_json() -> bytes:
    return orjson.dumps(_document())


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the document (callers may change it)."""
    document: dict[str, Any] = orjson.loads(openapi_json())
    return document


async def _serve(_request: Request) -> Response:
    return Response(openapi_json(), media_type="application/json")


def openapi_routes() -> list[Route]:
    """GET /openapi.json: public, like the service model it is generated from."""
    return [Route("/openapi.json", _serve, methods=["GET"])]
