"""Error codes shared by both ends; every failure the backend reports carries one of these."""


class ErrorCode:
    BAD_MESSAGE = "bad_message"  # not msgpack, not a map, wrong envelope shape
    VERSION_MISMATCH = "version_mismatch"
    UNKNOWN_TYPE = "unknown_type"
    MISSING_FIELD = "missing_field"
    BAD_FIELD = "bad_field"
    FRAME_MISMATCH = "frame_mismatch"  # frame count or byte size differs from the header
    IMAGE_TOO_LARGE = "image_too_large"
    TOO_LARGE = "too_large"  # a message, or a job's estimated memory, over the backend's limits
    BUSY = "busy"  # the job queue (this client's or the backend's) is full: try again later
    BAD_INPUT = "bad_input"  # well-formed request the pipeline cannot work on (empty mask, ...)
    NOT_AVAILABLE = "not_available"  # feature needs models or stages not present
    UNKNOWN_JOB = "unknown_job"
    SHUTTING_DOWN = "shutting_down"
    INTERNAL = "internal"


class ProtocolError(Exception):
    """A message could not be encoded or decoded; `code` is an ErrorCode value."""

    def __init__(self, code: str, text: str, detail: str = "") -> None:
        super().__init__(f"{code}: {text}" + (f" ({detail})" if detail else ""))
        self.code = code
        self.text = text
        self.detail = detail
