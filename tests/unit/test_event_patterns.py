"""EventBridge event-pattern matching, on AWS's documented examples adapted to batch job events."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from outcrop.events.patterns import PatternError, compile_pattern, matches

JOB_ARN = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abcdefghwxyz"

# The sample event from AWS's Bedrock batch inference EventBridge page (spec section 10).
COMPLETED: dict[str, Any] = {
    "version": "0",
    "id": "a1b2c3d4",
    "detail-type": "Batch Inference Job State Change",
    "source": "aws.bedrock",
    "account": "123456789012",
    "time": "2024-08-28T22:58:30Z",
    "region": "us-east-1",
    "resources": [JOB_ARN],
    "detail": {
        "version": "0.0",
        "accountId": "123456789012",
        "batchJobName": "nightly-2024-08-28",
        "batchJobArn": JOB_ARN,
        "batchModelId": "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-sonnet-20240229-v1:0",
        "status": "Completed",
        "failureMessage": "",
        "creationTime": "Aug 28, 2024, 10:47:53 PM",
        "processedRecordCount": 50,
        "successRecordCount": 50.0,
        "sourceIp": "10.0.0.33",
        "tags": [{"key": "team", "value": "ml"}, {"key": "env", "value": "prod"}],
        "outputDataConfig": {"s3Uri": "s3://bucket/out/"},
        "responseElements": None,
        "retried": False,
    },
}


def _event(**detail: Any) -> dict[str, Any]:
    """COMPLETED with some detail fields replaced; a value of ... removes the field."""
    event = copy.deepcopy(COMPLETED)
    for key, value in detail.items():
        if value is ...:
            event["detail"].pop(key)
        else:
            event["detail"][key] = value
    return event


IN_PROGRESS = _event(status="InProgress", failureMessage=...)
SCHEDULED = _event(status="Scheduled", failureMessage=...)
FAILED = _event(status="Failed", failureMessage="Access denied to s3://bucket/in/")
NO_RECORDS = _event(processedRecordCount=0, successRecordCount=0)
ADHOC = _event(batchJobName="adhoc-eval")

TYPICAL_RULE = {
    "source": ["aws.bedrock"],
    "detail-type": ["Batch Inference Job State Change"],
    "detail": {"status": ["Completed"]},
}

CASES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    # Exact values, AND across fields, OR within a field.
    ("typical rule, completed", TYPICAL_RULE, COMPLETED, True),
    ("typical rule, in progress", TYPICAL_RULE, IN_PROGRESS, False),
    ("other source", {"source": ["aws.sagemaker"]}, COMPLETED, False),
    ("source matches, detail does not", {"source": ["aws.bedrock"], "detail": {"status": ["Failed"]}}, COMPLETED, False),
    ("or within a field", {"detail": {"status": ["Failed", "Stopped", "Completed"]}}, COMPLETED, True),
    ("values are case sensitive", {"detail": {"status": ["completed"]}}, COMPLETED, False),
    ("fields absent from the pattern are ignored", {"detail": {"batchJobArn": [JOB_ARN]}}, IN_PROGRESS, True),
    ("pattern field missing from the event", {"detail": {"jobArn": [JOB_ARN]}}, COMPLETED, False),
    ("nested object missing from the event", {"detail": {"inputDataConfig": {"s3Uri": ["s3://b/"]}}}, COMPLETED, False),
    ("nested object matches", {"detail": {"outputDataConfig": {"s3Uri": ["s3://bucket/out/"]}}}, COMPLETED, True),
    ("leaf pattern against an object", {"detail": {"outputDataConfig": ["s3://bucket/out/"]}}, COMPLETED, False),
    # Numbers compare numerically; types never coerce.
    ("int event, float pattern", {"detail": {"processedRecordCount": [50.0]}}, COMPLETED, True),
    ("float event, int pattern", {"detail": {"successRecordCount": [50]}}, COMPLETED, True),
    ("number is not its string", {"detail": {"processedRecordCount": ["50"]}}, COMPLETED, False),
    ("false is not zero", {"detail": {"retried": [0]}}, COMPLETED, False),
    ("boolean value", {"detail": {"retried": [False]}}, COMPLETED, True),
    # Null and empty string are distinct.
    ("null matches null", {"detail": {"responseElements": [None]}}, COMPLETED, True),
    ("empty string matches empty string", {"detail": {"failureMessage": [""]}}, COMPLETED, True),
    ("empty string is not null", {"detail": {"responseElements": [""]}}, COMPLETED, False),
    ("null is not empty string", {"detail": {"failureMessage": [None]}}, COMPLETED, False),
    ("null is not a missing field", {"detail": {"failureMessage": [None]}}, IN_PROGRESS, False),
    # Arrays in the event match when any element matches.
    ("resources array contains the arn", {"resources": [JOB_ARN]}, COMPLETED, True),
    ("resources array lacks the arn", {"resources": [JOB_ARN + "x"]}, COMPLETED, False),
    ("array intersection", {"detail": {"labels": ["b", "z"]}}, _event(labels=["a", "b"]), True),
    ("array disjoint", {"detail": {"labels": ["y", "z"]}}, _event(labels=["a", "b"]), False),
    ("array of objects, same element", {"detail": {"tags": {"key": ["team"], "value": ["ml"]}}}, COMPLETED, True),
    ("array of objects, fields from different elements", {"detail": {"tags": {"key": ["team"], "value": ["prod"]}}}, COMPLETED, False),
    # Prefix and suffix.
    ("prefix", {"detail": {"batchJobName": [{"prefix": "nightly-"}]}}, COMPLETED, True),
    ("prefix mismatch", {"detail": {"batchJobName": [{"prefix": "nightly-"}]}}, ADHOC, False),
    ("prefix is case sensitive", {"detail": {"batchJobName": [{"prefix": "Nightly-"}]}}, COMPLETED, False),
    ("prefix ignoring case", {"detail": {"batchJobName": [{"prefix": {"equals-ignore-case": "NIGHTLY-"}}]}}, COMPLETED, True),
    ("prefix never matches numbers", {"detail": {"processedRecordCount": [{"prefix": "5"}]}}, COMPLETED, False),
    ("region prefix", {"source": ["aws.bedrock"], "region": [{"prefix": "us-"}]}, COMPLETED, True),
    ("suffix", {"detail": {"batchJobName": [{"suffix": "-eval"}]}}, ADHOC, True),
    ("suffix mismatch", {"detail": {"batchJobName": [{"suffix": "-eval"}]}}, COMPLETED, False),
    ("suffix ignoring case", {"detail": {"batchJobName": [{"suffix": {"equals-ignore-case": "-EVAL"}}]}}, ADHOC, True),
    ("equals-ignore-case", {"detail": {"status": [{"equals-ignore-case": "COMPLETED"}]}}, COMPLETED, True),
    ("equals-ignore-case is whole-value", {"detail": {"status": [{"equals-ignore-case": "complete"}]}}, COMPLETED, False),
    # Anything-but.
    ("anything-but list, completed", {"detail": {"status": [{"anything-but": ["InProgress", "Scheduled"]}]}}, COMPLETED, True),
    ("anything-but list, in progress", {"detail": {"status": [{"anything-but": ["InProgress", "Scheduled"]}]}}, IN_PROGRESS, False),
    ("anything-but list, scheduled", {"detail": {"status": [{"anything-but": ["InProgress", "Scheduled"]}]}}, SCHEDULED, False),
    ("anything-but single string", {"detail": {"status": [{"anything-but": "InProgress"}]}}, FAILED, True),
    ("anything-but number", {"detail": {"processedRecordCount": [{"anything-but": 0}]}}, NO_RECORDS, False),
    ("anything-but number list", {"detail": {"processedRecordCount": [{"anything-but": [0, 100]}]}}, COMPLETED, True),
    ("anything-but compares numerically", {"detail": {"processedRecordCount": [{"anything-but": [50.0]}]}}, COMPLETED, False),
    ("anything-but prefix", {"detail": {"status": [{"anything-but": {"prefix": "In"}}]}}, IN_PROGRESS, False),
    ("anything-but prefix, other value", {"detail": {"status": [{"anything-but": {"prefix": "In"}}]}}, COMPLETED, True),
    ("anything-but suffix", {"detail": {"batchJobName": [{"anything-but": {"suffix": "-eval"}}]}}, ADHOC, False),
    ("anything-but ignoring case", {"detail": {"status": [{"anything-but": {"equals-ignore-case": ["completed", "failed"]}}]}}, COMPLETED, False),
    ("anything-but never matches a missing field", {"detail": {"jobTags": [{"anything-but": "x"}]}}, COMPLETED, False),
    ("anything-but or missing", {"detail": {"jobTags": [{"anything-but": "x"}, {"exists": False}]}}, COMPLETED, True),
    ("anything-but over an array, one element differs", {"detail": {"labels": [{"anything-but": "a"}]}}, _event(labels=["a", "b"]), True),
    # Numeric.
    ("numeric range inside", {"detail": {"processedRecordCount": [{"numeric": [">", 0, "<=", 100]}]}}, COMPLETED, True),
    ("numeric range, excluded lower bound", {"detail": {"processedRecordCount": [{"numeric": [">", 0, "<=", 100]}]}}, NO_RECORDS, False),
    ("numeric range, included upper bound", {"detail": {"processedRecordCount": [{"numeric": [">", 0, "<=", 100]}]}}, _event(processedRecordCount=100), True),
    ("numeric range, above", {"detail": {"processedRecordCount": [{"numeric": [">", 0, "<=", 100]}]}}, _event(processedRecordCount=101), False),
    ("numeric >= includes the bound", {"detail": {"processedRecordCount": [{"numeric": [">=", 50]}]}}, COMPLETED, True),
    ("numeric < excludes the bound", {"detail": {"processedRecordCount": [{"numeric": ["<", 50]}]}}, COMPLETED, False),
    ("numeric equals", {"detail": {"successRecordCount": [{"numeric": ["=", 5.0e1]}]}}, COMPLETED, True),
    ("numeric ignores strings", {"detail": {"processedRecordCount": [{"numeric": [">", 0]}]}}, _event(processedRecordCount="50"), False),
    ("numeric ignores booleans", {"detail": {"retried": [{"numeric": ["<", 1]}]}}, COMPLETED, False),
    ("numeric on a missing field", {"detail": {"errorRecordCount": [{"numeric": [">=", 0]}]}}, COMPLETED, False),
    # Exists.
    ("exists false, field absent", {"detail": {"failureMessage": [{"exists": False}]}}, IN_PROGRESS, True),
    ("exists false, empty string present", {"detail": {"failureMessage": [{"exists": False}]}}, COMPLETED, False),
    ("exists true, empty string present", {"detail": {"failureMessage": [{"exists": True}]}}, COMPLETED, True),
    ("exists true, null present", {"detail": {"responseElements": [{"exists": True}]}}, COMPLETED, True),
    ("exists true, field absent", {"detail": {"failureMessage": [{"exists": True}]}}, IN_PROGRESS, False),
    ("exists false under a missing object", {"detail": {"vpcConfig": {"subnetIds": [{"exists": False}]}}}, COMPLETED, True),
    ("exists only sees leaves", {"detail": {"outputDataConfig": [{"exists": False}]}}, COMPLETED, True),
    ("exists false, empty array", {"resources": [{"exists": False}]}, {**COMPLETED, "resources": []}, True),
    # IP addresses.
    ("cidr inside", {"detail": {"sourceIp": [{"cidr": "10.0.0.0/24"}]}}, COMPLETED, True),
    ("cidr outside", {"detail": {"sourceIp": [{"cidr": "10.0.1.0/24"}]}}, COMPLETED, False),
    ("cidr ipv6", {"detail": {"sourceIp": [{"cidr": "2001:db8::/32"}]}}, _event(sourceIp="2001:db8::1"), True),
    ("cidr against a non-address", {"detail": {"status": [{"cidr": "10.0.0.0/8"}]}}, COMPLETED, False),
    # Wildcard.
    ("wildcard", {"detail": {"batchJobArn": [{"wildcard": "arn:aws:bedrock:*:model-invocation-job/*"}]}}, COMPLETED, True),
    ("wildcard mismatch", {"detail": {"batchJobArn": [{"wildcard": "arn:aws:bedrock:eu-*"}]}}, COMPLETED, False),
    ("wildcard is anchored", {"detail": {"status": [{"wildcard": "Comp*e"}]}}, COMPLETED, False),
    ("escaped star is literal", {"detail": {"batchJobName": [{"wildcard": "job\\*"}]}}, _event(batchJobName="job*"), True),
    ("escaped star does not glob", {"detail": {"batchJobName": [{"wildcard": "job\\*"}]}}, _event(batchJobName="job-1"), False),
    ("anything-but wildcard", {"detail": {"batchJobName": [{"anything-but": {"wildcard": "nightly-*"}}]}}, COMPLETED, False),
    # Multiple matchers in one array are OR'd.
    ("multiple matching, exact hits", {"detail": {"status": ["Completed", {"prefix": "Fail"}]}}, COMPLETED, True),
    ("multiple matching, prefix hits", {"detail": {"status": ["Completed", {"prefix": "Fail"}]}}, FAILED, True),
    ("multiple matching, neither", {"detail": {"status": ["Completed", {"prefix": "Fail"}]}}, IN_PROGRESS, False),
    ("complex example", {
        "time": [{"prefix": "2024-08-28"}],
        "detail": {
            "status": [{"anything-but": "InProgress"}],
            "processedRecordCount": [{"numeric": [">", 0, "<=", 100]}],
            "successRecordCount": [{"numeric": ["<", 1000]}],
            "sourceIp": [{"cidr": "10.0.0.0/8"}],
        },
    }, COMPLETED, True),
    # $or.
    ("$or, first branch", {"$or": [{"detail": {"status": ["Completed"]}}, {"detail": {"failureMessage": [{"prefix": "Access"}]}}]}, COMPLETED, True),
    ("$or, second branch", {"$or": [{"detail": {"status": ["Completed"]}}, {"detail": {"failureMessage": [{"prefix": "Access"}]}}]}, FAILED, True),
    ("$or, no branch", {"$or": [{"detail": {"status": ["Completed"]}}, {"detail": {"failureMessage": [{"prefix": "Access"}]}}]}, IN_PROGRESS, False),
    ("$or is AND'd with its siblings", {"source": ["aws.s3"], "$or": [{"region": ["us-east-1"]}, {"account": ["1"]}]}, COMPLETED, False),
    ("nested $or", {"detail": {"$or": [{"status": ["Stopped"]}, {"processedRecordCount": [{"numeric": [">", 10]}]}]}}, COMPLETED, True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("pattern", "event", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_matches(pattern: dict[str, Any], event: dict[str, Any], expected: bool) -> None:
    assert compile_pattern(pattern).matches(event) is expected
    assert matches(pattern, event) is expected


def test_pattern_as_json_text() -> None:
    # PutRule carries EventPattern as a JSON string.
    rule = '{"source":["aws.bedrock"],"detail":{"status":["Completed"],"retried":[false]}}'
    pattern = compile_pattern(rule)
    assert pattern.matches(COMPLETED)
    assert not pattern.matches(IN_PROGRESS)
    assert compile_pattern(rule.encode()).matches(COMPLETED)


def test_compiled_pattern_ignores_later_edits_to_its_source() -> None:
    rule: dict[str, Any] = {"detail": {"status": ["Completed"]}}
    pattern = compile_pattern(rule)
    rule["detail"]["status"] = ["Failed"]
    assert pattern.matches(COMPLETED)


MALFORMED: list[tuple[object, str]] = [
    (["aws.bedrock"], "must be a JSON object"),
    ("not json", "not valid JSON"),
    ("[1]", "must be a JSON object"),
    (None, "must be a JSON object"),
    ({}, "must not be empty"),
    ({"detail": {}}, "detail must not be empty"),
    ({"source": "aws.bedrock"}, "source must be an array of values or an object"),
    ({"detail": {"processedRecordCount": 5}}, "detail.processedRecordCount must be an array"),
    ({"source": []}, "must not be an empty array"),
    ({"source": [["aws.bedrock"]]}, r"source\[0\] must be a string, number, boolean, null"),
    ({"detail": {"status": [{"startswith": "x"}]}}, "unknown operator"),
    ({"detail": {"status": [{}]}}, "exactly one operator"),
    ({"detail": {"status": [{"prefix": "a", "suffix": "b"}]}}, "exactly one operator"),
    ({"detail": {"status": [{"prefix": 5}]}}, "prefix must be a string"),
    ({"detail": {"status": [{"prefix": {"wildcard": "a*"}}]}}, "prefix takes a string or"),
    ({"detail": {"status": [{"suffix": None}]}}, "suffix must be a string"),
    (
        {"detail": {"status": [{"equals-ignore-case": ["a"]}]}},
        "equals-ignore-case must be a string",
    ),
    ({"detail": {"status": [{"exists": "true"}]}}, "exists must be true or false"),
    ({"detail": {"status": [{"anything-but": ["a", 1]}]}}, "strings only or numbers only"),
    ({"detail": {"status": [{"anything-but": None}]}}, "strings only or numbers only"),
    ({"detail": {"status": [{"anything-but": True}]}}, "strings only or numbers only"),
    ({"detail": {"status": [{"anything-but": []}]}}, "must not be an empty array"),
    (
        {"detail": {"status": [{"anything-but": {"numeric": [">", 1]}}]}},
        "anything-but takes a value",
    ),
    ({"detail": {"status": [{"anything-but": {"prefix": 1}}]}}, "prefix must be a string"),
    ({"detail": {"n": [{"numeric": 5}]}}, r"must be \[op, number\]"),
    ({"detail": {"n": [{"numeric": []}]}}, r"must be \[op, number\]"),
    ({"detail": {"n": [{"numeric": [">"]}]}}, r"must be \[op, number\]"),
    ({"detail": {"n": [{"numeric": [">", 1, "<", 5, "<", 6]}]}}, r"must be \[op, number\]"),
    ({"detail": {"n": [{"numeric": [">", "0"]}]}}, "needs a finite number"),
    ({"detail": {"n": [{"numeric": [">", True]}]}}, "needs a finite number"),
    ({"detail": {"n": [{"numeric": ["!=", 1]}]}}, "unknown operator '!='"),
    ({"detail": {"n": [{"numeric": [">", 5, "<", 1]}]}}, "lower bound must be below"),
    ({"detail": {"n": [{"numeric": [">", 1, ">=", 2]}]}}, "two lower bounds"),
    ({"detail": {"n": [{"numeric": ["<", 1, "<=", 2]}]}}, "two upper bounds"),
    ({"detail": {"n": [{"numeric": ["=", 1, "<", 3]}]}}, "'=' cannot be combined"),
    ({"detail": {"s": [{"wildcard": "a**b"}]}}, "consecutive"),
    ({"detail": {"s": [{"wildcard": "a\\b"}]}}, "may be escaped"),
    ({"detail": {"s": [{"cidr": "10.0.0.0/33"}]}}, "must be an IP address range"),
    ({"detail": {"s": [{"cidr": "nope"}]}}, "must be an IP address range"),
    ({"$or": {"source": ["a"]}}, "at least two objects"),
    ({"$or": [{"source": ["a"]}]}, "at least two objects"),
    ({"$or": [{"source": ["a"]}, ["b"]]}, r"\$or\[1\] must be a JSON object"),
]


@pytest.mark.parametrize(("pattern", "message"), MALFORMED, ids=[m for _, m in MALFORMED])
def test_malformed_patterns(pattern: object, message: str) -> None:
    with pytest.raises(PatternError, match=message):
        compile_pattern(pattern)


def test_pattern_error_is_a_value_error_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"detail\.status\[1\]\.numeric"):
        compile_pattern({"detail": {"status": ["Completed", {"numeric": [">"]}]}})


# Events as JSON objects; "$or" is kept out of keys since it is the pattern's OR primitive.
_keys = st.text(min_size=1, max_size=8).filter(lambda key: key != "$or")
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**12), max_value=10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_values = st.recursive(
    _scalars | st.lists(_scalars, max_size=4),
    lambda inner: st.dictionaries(_keys, inner, max_size=4),
    max_leaves=12,
)
_events = st.dictionaries(_keys, _values, min_size=1, max_size=5)


def _pattern_from(event: dict[str, Any]) -> dict[str, Any]:
    """A pattern that names every value of `event`, each field asking for its own value."""
    pattern: dict[str, Any] = {}
    for key, value in event.items():
        if isinstance(value, dict):
            if sub := _pattern_from(value):
                pattern[key] = sub
        elif isinstance(value, list):
            if value:
                pattern[key] = list(value)
        else:
            pattern[key] = [value]
    return pattern


@given(_events)
def test_a_pattern_of_an_events_own_values_matches_it(event: dict[str, Any]) -> None:
    pattern = _pattern_from(event)
    assume(pattern)
    assert matches(pattern, event)


_probes = (
    st.integers(min_value=-(10**12), max_value=10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)


@given(_events, _keys, _probes, _probes)
def test_exact_and_anything_but_disagree_on_present_values(
    event: dict[str, Any], key: str, value: str | float, other: str | float
) -> None:
    # For a present string or number, [v] and [{"anything-but": v}] must give opposite answers.
    event = {**event, key: value}
    for probe in (value, other):
        assert matches({key: [probe]}, event) is not matches(
            {key: [{"anything-but": probe}]}, event
        )
