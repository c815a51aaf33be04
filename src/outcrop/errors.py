"""One exception tree for Outcrop; each class carries the AWS error code and HTTP status it maps to.

    OutcropError
    ├── ValidationError              ValidationException            400
    ├── ConflictError                ConflictException              400
    ├── ServiceQuotaExceededError    ServiceQuotaExceededException  400
    ├── TooManyTagsError             TooManyTagsException           400
    ├── AccessDeniedError            AccessDeniedException          403
    ├── AuthenticationError                                          403
    │   ├── MissingAuthenticationTokenError  MissingAuthenticationTokenException
    │   ├── UnrecognizedClientError          UnrecognizedClientException
    │   └── InvalidSignatureError            InvalidSignatureException
    ├── ResourceNotFoundError        ResourceNotFoundException      404
    ├── ThrottlingError              ThrottlingException            429
    └── InternalServerError          InternalServerException        500

The core raises these; the API turns them into the wire error in exactly one place
(`outcrop.api.errors`). Nothing else needs to know about HTTP statuses.
"""

from __future__ import annotations


class OutcropError(Exception):
    code = "InternalServerException"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationError(OutcropError):
    code = "ValidationException"
    status = 400


class ConflictError(OutcropError):
    code = "ConflictException"
    status = 400


class ServiceQuotaExceededError(OutcropError):
    code = "ServiceQuotaExceededException"
    status = 400


class TooManyTagsError(OutcropError):
    code = "TooManyTagsException"
    status = 400

    def __init__(self, message: str, resource_name: str | None = None) -> None:
        super().__init__(message)
        self.resource_name = resource_name


class AccessDeniedError(OutcropError):
    code = "AccessDeniedException"
    status = 403


class AuthenticationError(OutcropError):
    status = 403


class MissingAuthenticationTokenError(AuthenticationError):
    code = "MissingAuthenticationTokenException"


class UnrecognizedClientError(AuthenticationError):
    code = "UnrecognizedClientException"


class InvalidSignatureError(AuthenticationError):
    code = "InvalidSignatureException"


class ResourceNotFoundError(OutcropError):
    code = "ResourceNotFoundException"
    status = 404


class ThrottlingError(OutcropError):
    code = "ThrottlingException"
    status = 429


class InternalServerError(OutcropError):
    code = "InternalServerException"
    status = 500
