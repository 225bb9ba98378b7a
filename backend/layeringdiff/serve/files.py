"""The open-files limit: raised at start so a connection flood meets the higher one, and read to cap connections."""

import os

FILES_WANTED = 1 << 16  # the soft open-files limit is raised this far at most (the hard limit where lower)


def raise_open_files() -> int:
    """Raise the soft open-files limit (RLIMIT_NOFILE) to the hard one, so a connection flood meets the higher
    limit (connections are capped below it anyway; beyond FILES_WANTED some libraries' loops over every
    descriptor number grow long). Returns the soft limit now; 0 where there is none (Windows)."""
    try:
        import resource
    except ImportError:
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = FILES_WANTED if hard == resource.RLIM_INFINITY else min(hard, FILES_WANTED)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return soft
    for target in (want, 10240):  # macOS refuses more than OPEN_MAX (10240) with an unlimited hard limit
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_files() -> tuple[int, int]:
    """(the soft open-files limit, descriptors open now); (0, 0) where they cannot be read."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except ImportError:
        return 0, 0
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return soft, len(os.listdir(folder))
        except OSError:
            continue
    return soft, 0
