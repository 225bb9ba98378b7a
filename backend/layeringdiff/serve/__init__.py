"""The backend server (`layeringdiff serve`): sockets and peers, the job queue, worker processes.

The server is imported on first use: a worker process imports `serve.worker` before it sets its thread limits,
and numpy, SciPy and OpenCV read those limits once, when they are first imported (OpenBLAS would otherwise start
a thread a core in every worker, spinning against the other workers' jobs).
"""

from typing import Any

__all__ = ["Server", "ServerConfig"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
