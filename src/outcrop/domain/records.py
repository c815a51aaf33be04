"""Batch records: input line validation, generated recordIds, output lines and the manifest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

BOM = b"\xef\xbb\xbf"


class RecordFormatError(ValueError):
    """A line that is not a valid batch record (a validation failure, reported with its line)."""


@dataclass(slots=True)  # built for every record: slots, not frozen (see formats.base)
class InputRecord:
    record_id: str
    model_input: dict[str, Any]


def is_blank(line: bytes) -> bool:
    # isspace() copies nothing (strip() copied every line); b"" is blank too.
    return not line or line.isspace()


def parse_line(line: bytes) -> dict[str, Any]:
    """Parse and check one non-blank input line; raise RecordFormatError with a short reason."""
    try:
        data = orjson.loads(line)  # also rejects invalid UTF-8
    except orjson.JSONDecodeError as exc:
        reason = "not valid UTF-8" if "utf-8" in str(exc).lower() else "not valid JSON"
        raise RecordFormatError(reason) from None
    if not isinstance(data, dict):
        raise RecordFormatError("not a JSON object")
    model_input = data.get("modelInput")
    if model_input is None:
        raise RecordFormatError("missing modelInput")
    if not isinstance(model_input, dict):
        raise RecordFormatError("modelInput is not a JSON object")
    record_id = data.get("recordId")
    if record_id is not None and not isinstance(record_id, str):
        raise RecordFormatError("recordId is not a string")
    return data


def generated_record_id(file_index: int, line_number: int) -> str:
    """The recordId of a record that has none: 'L' + 3-digit file index + 7-digit line number.

    Stable across retries and restarts (it depends only on where the record sits), and unique
    within a job: e.g. the record on line 42 of the job's first input file is L0000000042.
    """
    return f"L{file_index:03d}{line_number:07d}"


def to_record(data: dict[str, Any], file_index: int, line_number: int) -> InputRecord:
    record_id = data.get("recordId")
    return InputRecord(
        record_id=record_id
        if isinstance(record_id, str)
        else generated_record_id(file_index, line_number),
        model_input=data["modelInput"],
    )


def output_line(record: InputRecord, model_output: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "recordId": record.record_id,
            "modelInput": record.model_input,
            "modelOutput": model_output,
        }
    )


def error_line(record: InputRecord, error_code: int, message: str) -> bytes:
    return orjson.dumps(
        {
            "recordId": record.record_id,
            "modelInput": record.model_input,
            "error": {"errorCode": error_code, "errorMessage": message},
        }
    )


@dataclass(frozen=True)
class Manifest:
    total: int
    processed: int
    success: int
    error: int
    input_tokens: int
    output_tokens: int

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "totalRecordCount": self.total,
                "processedRecordCount": self.processed,
                "successRecordCount": self.success,
                "errorRecordCount": self.error,
                "inputTokenCount": self.input_tokens,
                "outputTokenCount": self.output_tokens,
            }
        )
