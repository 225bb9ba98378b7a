"""The backend server (`layeringdiff serve`): sockets and peers, the job queue, worker processes."""

from .server import Server, ServerConfig

__all__ = ["Server", "ServerConfig"]
