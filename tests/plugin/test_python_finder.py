"""Finding a Python for the docker's backend setup, on each platform (the lookup's effects are injected: the
machines in these tests are described, not needed). End to end on Linux: tests/krita/test_release_zip.py."""

import sys

from layeringdiff_krita.python_finder import NOT_FOUND, PROBE, UV_PYTHON, find_python, py_launcher_versions


class Machine:
    """Programs on PATH and files on disk, and what each Python answers to the probe."""

    def __init__(self, path=None, files=(), pythons=None, listing=""):
        self.path = path or {}  # name -> full path
        self.files = set(files)
        # (program, *prefix) -> (version, executable[, has venv]); absent: not a Python at all
        self.pythons = pythons or {}
        self.listing = listing
        self.ran = []

    def which(self, name):
        return self.path.get(name)

    def is_file(self, path):
        return path in self.files

    def run(self, cmd):
        self.ran.append(list(cmd))
        if cmd[-1] == "-0p":
            return (0, self.listing) if self.listing else (1, "")
        assert cmd[-2:] == ["-c", PROBE]
        answer = self.pythons.get(tuple(cmd[:-2]))
        if answer is None:
            return 1, ""  # not a Python at all
        version, executable, *venv = answer
        if venv and not venv[0]:  # the version said, then `import venv, ensurepip` fails
            return 1, f"{version}\n{executable}\n"
        return 0, f"{version}\n{executable}\nvenv\n"

    def find(self, system, uv_dirs=(), tried=None):
        return find_python(system, self.which, self.run, self.is_file, uv_dirs, tried)


def test_linux_prefers_the_best_supported_python_with_venv():
    m = Machine(path={"python3": "/usr/bin/python3", "python3.13": "/usr/bin/python3.13",
                      "python3.12": "/opt/py/bin/python3.12"},
                pythons={("/usr/bin/python3",): ("3.13", "/usr/bin/python3.13"),
                         ("/usr/bin/python3.13",): ("3.13", "/usr/bin/python3.13"),
                         # 3.12 without venv (Debian's without python3-venv)
                         ("/opt/py/bin/python3.12",): ("3.12", "/opt/py/bin/python3.12", False)})
    found = m.find("linux")
    assert found.command == ["/usr/bin/python3.13"] and found.version == "3.13"
    assert "/opt/py/bin/python3.12: 3.12 without venv/ensurepip (Debian, Ubuntu: install python3-venv)" in found.tried


def test_linux_refuses_pythons_older_than_3_10_and_says_what_to_install():
    m = Machine(path={"python3": "/usr/bin/python3", "python3.11": "/usr/bin/python3.11"},
                files={"/usr/local/bin/python3.12"},
                pythons={("/usr/bin/python3",): ("3.9", "/usr/bin/python3"),
                         ("/usr/bin/python3.11",): ("3.11", "/usr/bin/python3.11", False)})
    tried = []
    assert m.find("linux", tried=tried) is None
    assert "3.10" in NOT_FOUND and "python3-venv" in NOT_FOUND and "uv" in NOT_FOUND
    # what each one is, for the docker's log: the user sees why none was taken
    assert tried == ["/usr/local/bin/python3.12: does not run (or is no Python)",
                     "/usr/bin/python3.11: 3.11 without venv/ensurepip (Debian, Ubuntu: install python3-venv)",
                     "/usr/bin/python3: 3.9, older than 3.10"]


def test_macos_looks_beyond_the_short_path_of_an_app_started_from_the_finder():
    m = Machine(path={"python3": "/usr/bin/python3"}, files={"/opt/homebrew/bin/python3.12"},
                pythons={("/usr/bin/python3",): ("3.9", "/usr/bin/python3"),  # Apple's own, too old
                         ("/opt/homebrew/bin/python3.12",): ("3.12", "/opt/homebrew/bin/python3.12")})
    found = m.find("darwin")
    assert found.command == ["/opt/homebrew/bin/python3.12"]


def test_windows_uses_the_py_launcher_and_runs_the_real_interpreter():
    listing = " -V:3.14 *        C:\\Python314\\python.exe\n -V:3.12          C:\\Python312\\python.exe\n"
    m = Machine(path={"py": "C:\\Windows\\py.exe"}, listing=listing,
                pythons={("C:\\Windows\\py.exe", "-3.12"): ("3.12", "C:\\Python312\\python.exe"),
                         ("C:\\Windows\\py.exe", "-3.14"): ("3.14", "C:\\Python314\\python.exe"),
                         ("C:\\Windows\\py.exe", "-3"): ("3.14", "C:\\Python314\\python.exe")})
    found = m.find("win32")
    assert found.command == ["C:\\Python312\\python.exe"] and found.version == "3.12"


def test_windows_older_launcher_listing_and_the_store_stand_in():
    assert py_launcher_versions(" -3.11-64        C:\\Py311\\python.exe\n -2.7-64  C:\\Py27\\python.exe") == \
        ["3.11", "2.7"]
    # python.exe of the Microsoft Store opens the Store: never run it
    m = Machine(path={"python": "C:\\Users\\a\\AppData\\Local\\Microsoft\\WindowsApps\\python.exe"})
    assert m.find("win32") is None and m.ran == []


def test_uv_is_the_fallback_where_no_python_is_found():
    m = Machine(files={"/home/a/.local/share/krita/layeringdiff/uv/uv"})
    found = m.find("linux", uv_dirs=["/home/a/.local/share/krita/layeringdiff/uv"])
    assert found.command == ["/home/a/.local/share/krita/layeringdiff/uv/uv", "run", "--no-project", "--python",
                             UV_PYTHON, "python"]
    windows = Machine(path={"uv": "C:\\tools\\uv.exe"}).find("win32")
    assert windows.command[0] == "C:\\tools\\uv.exe"


def test_this_machines_python_is_found_for_real():
    """No injection: the real PATH and the real probe (this test's own Python has venv)."""
    found = find_python(sys.platform)
    assert found is not None and tuple(map(int, found.version.split("."))) >= (3, 10)
