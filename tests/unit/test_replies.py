"""One mapping from an exception to what the user reads, for the server's replies and the CLI's error line."""

import logging

import pytest
from layering_protocol import ErrorCode, ProtocolError
from layeringdiff.errors import InputError, NotAvailable
from layeringdiff.replies import bounded, incident_logger, to_reply


@pytest.mark.parametrize("exc,code,text,detail", [
    (ProtocolError(ErrorCode.BUSY, "full", "later"), ErrorCode.BUSY, "full", "later"),
    (InputError("empty mask", "paint one"), ErrorCode.BAD_INPUT, "empty mask", "paint one"),
    (NotAvailable("no sdxl", "fetch it"), ErrorCode.NOT_AVAILABLE, "no sdxl", "fetch it"),
    (ModuleNotFoundError("No module named 'torch'", name="torch"), ErrorCode.NOT_AVAILABLE,
     "this needs torch, which is not installed (the ml extra)",
     "install torch (the build for your GPU), then pip install 'layeringdiff[ml]'"),
    (MemoryError(), ErrorCode.TOO_LARGE, "not enough memory for this image: try a smaller one",
     "split a smaller layer or a selection of it, or free memory"),
])
def test_expected_failures_keep_their_words(exc, code, text, detail):
    failure = to_reply(exc)
    assert (failure.code, failure.text, failure.detail, failure.internal) == (code, text, detail, False)


def test_anything_else_is_internal_with_a_log_id_and_nothing_of_the_exception(caplog):
    log = logging.getLogger("test.replies")
    try:
        raise KeyError("secret")
    except KeyError as exc:
        with caplog.at_level("ERROR", logger="test.replies"):
            failure = to_reply(exc, incident_logger(log, "in job j"))
    assert failure.internal and failure.code == ErrorCode.INTERNAL and "secret" not in failure.text
    key = failure.text.split("log id ")[1].split(")")[0]
    assert failure.text == f"internal error (log id {key}): the backend's log has the details"
    assert caplog.records[0].getMessage() == f"internal error {key} in job j" and caplog.records[0].exc_info
    missing = to_reply(ModuleNotFoundError("No module named 'foo'", name="foo"))
    assert missing.internal and missing.text == "internal error: a module is missing: foo"


def test_replies_quoting_a_client_are_cut_short():
    error = to_reply(InputError("x" * 5000, "y" * 5000)).error(job="j" * 500)
    assert len(error.text) <= 1000 and len(error.detail) <= 2000 and len(error.job) <= 128
    assert bounded("not an error") == "not an error"
