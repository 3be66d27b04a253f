"""Error bodies as OTLP/HTTP asks: a ``google.rpc.Status`` in the request's encoding.

The OTLP/HTTP specification says a receiver answers an error with a
``Status`` message, protobuf-encoded for protobuf requests and in JSON for
JSON ones. The JSON form also carries the studio's usual ``status_code`` and
``detail``, so one client reads every error of the API the same way.
"""

from __future__ import annotations

import json

from google.rpc import code_pb2, status_pb2

PROTOBUF = "application/x-protobuf"
PROTOBUF_TYPES = {PROTOBUF, "application/protobuf"}
# HTTP status -> google.rpc.Code, as gRPC-HTTP mappings pair them.
_CODES = {
    400: code_pb2.INVALID_ARGUMENT,
    401: code_pb2.UNAUTHENTICATED,
    403: code_pb2.PERMISSION_DENIED,
    404: code_pb2.NOT_FOUND,
    405: code_pb2.UNIMPLEMENTED,
    413: code_pb2.RESOURCE_EXHAUSTED,
    415: code_pb2.INVALID_ARGUMENT,
    429: code_pb2.RESOURCE_EXHAUSTED,
    500: code_pb2.INTERNAL,
    503: code_pb2.UNAVAILABLE,
}


def media_type(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


def rpc_code(status: int) -> int:
    return _CODES.get(status, code_pb2.INVALID_ARGUMENT if status < 500 else code_pb2.INTERNAL)


def status_body(status: int, message: str, content_type: str) -> tuple[bytes, str]:
    """(body, media type) of an error answer to a request sent as ``content_type``."""
    code = rpc_code(status)
    if media_type(content_type) in PROTOBUF_TYPES:
        return status_pb2.Status(code=code, message=message).SerializeToString(), PROTOBUF
    body = {
        "code": code,
        "message": message,
        "details": [],
        "status_code": status,
        "detail": message,
    }
    return json.dumps(body).encode(), "application/json"
