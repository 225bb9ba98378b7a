"""Mutation testing of the core modules with mutmut 3: how many small edits of each module the tests catch.

    .venv/bin/python tools/mutation.py                 # every module below, then the table
    .venv/bin/python tools/mutation.py compose codec   # some of them
    .venv/bin/python tools/mutation.py --table         # the table of the last runs only
    .venv/bin/python tools/mutation.py --again compose  # only the last run's survivors, after new tests
    .venv/bin/python tools/mutation.py matting --quick tests/unit/test_matting.py  # those, against new tests only
    .venv/bin/python tools/mutation.py limits --quick tests/unit/test_admission.py --only 'layeringdiff.limits.*'
    .venv/bin/python tools/mutation.py --survivors compose   # each unexplained survivor's diff
    .venv/bin/python tools/mutation.py --brief compose       # the same, one line each
    .venv/bin/python tools/mutation.py --kept compose        # the survivors kept, each with its reason

Why mutmut: it imports the code and collects the tests once, records which tests reach each function, then
forks one child per mutant that runs only those tests. cosmic-ray starts the whole test command afresh for
every mutant (numpy, OpenCV and ZeroMQ imports alone take over a second here), about ten times slower on
this project's 2-core machines. mutmut expects one `src/` tree that tests import by package name, while
this repository keeps three packages in three folders; so each module runs in its own staging folder,
.mutation/<module>/, holding copies of the packages under src/, the tests, the benchmarks (tests import
benchmarks/edge_scenes.py) and pyproject.toml with the module's [tool.mutmut] section added. Results are kept
there: a rerun tests only the functions that changed.
Survivors kept on purpose are listed in tools/mutation_kept.txt, each with a one-line reason (an equivalent
mutant, or not worth a test); the table counts them apart, and --survivors shows only the unexplained ones.
Needs `pip install -e '.[mutation]'`. Not part of .ci/run (hours for all modules on 2 cores).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / ".mutation"  # not build/: installer/package.py empties that
KEPT = ROOT / "tools" / "mutation_kept.txt"
PACKAGES = {"layeringdiff": "backend/layeringdiff", "layering_protocol": "protocol/layering_protocol",
            "layeringdiff_krita": "plugin/layeringdiff_krita"}


@dataclass(frozen=True)
class Target:
    files: tuple[str, ...]  # under src/ (package paths)
    tests: tuple[str, ...]  # the tests that may reach them (mutmut keeps, per function, the ones that do)
    functions: tuple[str, ...] = ("*",)  # fnmatch patterns of mutant names, to test part of a big module
    deselect: tuple[str, ...] = ()  # tests that read the source files themselves (mutmut rewrites them)


MODULES = {
    "compose": Target(("layeringdiff/imaging/compose.py",), ("tests/unit",)),
    "trimap": Target(("layeringdiff/imaging/trimap.py",), ("tests/unit",)),
    # not the numba kernel (_assemble): mutmut switches mutants with a Python trampoline, which compiled code never
    # calls (its mutants would all read "no tests"); the kernel is checked by the matting tests' exact values
    "matting": Target(("layeringdiff/imaging/matting.py",), ("tests/unit",),
                      tuple(f"layeringdiff.imaging.matting.x_{f}__mutmut_*" for f in
                            ("estimate_alpha", "_estimate_band", "guided_filter", "_estimate_alpha", "_hold_half",
                             "hint_agreement", "_solve"))),
    "split": Target(("layeringdiff/stages/split.py",), ("tests/unit",)),
    "codec": Target(("layering_protocol/codec.py",), ("tests/unit/test_protocol.py", "tests/integration/test_fuzz.py"),
                    deselect=("tests/unit/test_protocol.py::test_protocol_package_imports_only_stdlib_and_msgpack",)),
    # the server's limits and its job queue: admission and the fair order (jobs.py), the per-message limit and
    # the reply backlog (transport.py), requests and cancels (server.py), a job's room in the budget (workers.py)
    "limits": Target(("layeringdiff/limits.py", "layeringdiff/serve/jobs.py", "layeringdiff/serve/transport.py",
                      "layeringdiff/serve/server.py", "layeringdiff/serve/workers.py"),
                     ("tests/unit/test_limits.py", "tests/unit/test_admission.py", "tests/unit/test_job_queue.py",
                      "tests/integration/test_limits.py",
                      "tests/integration/test_queue.py", "tests/integration/test_workers.py",
                      "tests/integration/test_server.py"),
                     ("layeringdiff.limits.*", "layeringdiff.serve.jobs.*",
                      "layeringdiff.serve.transport.xǁTransportǁreceive__mutmut_*",
                      "layeringdiff.serve.transport.xǁTransportǁ_message__mutmut_*",
                      "layeringdiff.serve.transport.xǁTransportǁforward__mutmut_*",
                      "layeringdiff.serve.transport.xǁTransportǁflush__mutmut_*",
                      "layeringdiff.serve.server.xǁServerǁon_message__mutmut_*",
                      "layeringdiff.serve.server.xǁServerǁ_oversized__mutmut_*",
                      "layeringdiff.serve.server.xǁServerǁ_dispatch__mutmut_*",
                      "layeringdiff.serve.server.xǁServerǁ_cancel__mutmut_*",
                      "layeringdiff.serve.server.xǁServerǁ_withdraw__mutmut_*",
                      "layeringdiff.serve.workers.xǁWorkerǁ_check_room__mutmut_*",
                      "layeringdiff.serve.workers.xǁPoolǁshare__mutmut_*")),
    "krita_bridge": Target(("layeringdiff_krita/krita_bridge.py",),
                           ("tests/plugin/test_krita_bridge.py", "tests/plugin/test_mock_projection.py")),
}


def toml_list(items: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def stage(name: str, target: Target) -> Path:
    """A src/ layout copy of the packages and the tests, with this module's mutmut configuration."""
    where = STAGE / name
    for old in ("src", "tests", "benchmarks"):  # files renamed or removed since must not linger in the copy
        shutil.rmtree(where / old, ignore_errors=True)
    for package, folder in PACKAGES.items():
        shutil.copytree(ROOT / folder, where / "src" / package, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "tests", where / "tests", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "artifacts"))
    shutil.copytree(ROOT / "benchmarks", where / "benchmarks", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    config = (ROOT / "pyproject.toml").read_text()
    section = "\n".join([
        "", "[tool.mutmut]",
        'source_paths = ["src/"]',
        'also_copy = ["benchmarks/"]',  # mutmut copies tests/ itself
        f"only_mutate = {toml_list(['src/' + f for f in target.files])}",
        f"pytest_add_cli_args_test_selection = {toml_list(target.tests)}",
        "pytest_add_cli_args = " + toml_list(["-p", "no:cacheprovider", "-m", "not krita",
                                              *(f"--deselect={t}" for t in target.deselect)]),
        "use_git_change_detection = false", ""])
    (where / "pyproject.toml").write_text(config + section)
    return where


def run(name: str, target: Target, again: bool = False) -> int:
    """mutmut run on the target's mutants (named, so each is tested again: mutmut keeps a named mutant's old result
    only when it is not named); with `again`, only those that survived, had no tests, or were not reached (a run
    stopped part-way) last time."""
    names = list(target.functions)
    if again:
        names = [k for k, v in statuses(name, target).items() if v in ("survived", "no tests", "not checked")]
        if not names:
            return 0
    where = stage(name, target)
    # which tests reach which function, collected afresh: mutmut's own update for new tests missed some (3.8.1)
    (where / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    mutmut = Path(sys.executable).with_name("mutmut")
    print(f"== {name}: mutmut run in {where.relative_to(ROOT)} ({len(names)} names or patterns)", flush=True)
    return subprocess.run([str(mutmut), "run", "--max-children", "2", *names], cwd=where).returncode


def quick(name: str, target: Target, tests: list[str], jobs: int = 2, only: tuple[str, ...] = ("*",)) -> int:
    """The last run's unexplained survivors and unreached mutants, each run against `tests` alone (the test files
    written for them) instead of every test mutmut finds reaching the function: minutes where mutmut takes an hour
    for a module whose functions every split test reaches. A failing test kills the mutant, and that is recorded in
    mutmut's own record (as mutmut records a kill), and so is one that runs past three times the tests' own time
    without a mutant, QUICK_TIMEOUT_S at least (a timeout, as mutmut records one); a passing one as a survivor.
    Each result is recorded as it comes. Runs in mutmut's copy, its packages under src/ first, with the tests as
    they are now, and nothing is recorded if they fail there without a mutant."""

    from concurrent.futures import ThreadPoolExecutor, as_completed

    from mutmut.stats import status_by_exit_code

    reasons = kept()
    from fnmatch import fnmatch

    names = [k for k, v in statuses(name, target).items()
             if v in ("survived", "no tests", "not checked") and not explained(k, reasons)
             and any(fnmatch(k, pattern) for pattern in only)]
    where = stage(name, target)
    mutants = where / "mutants"
    # the tests as they are now, run from mutmut's copy: a backend the tests start as a child process then runs
    # the mutant too (tests/conftest.child_env puts the copy's src/ first)
    for folder in ("tests", "benchmarks"):
        shutil.copytree(where / folder, mutants / folder, dirs_exist_ok=True)
    env = dict(os.environ, PYTHONPATH="src")

    def one(key: str, timeout: float) -> tuple[str, int | None, str]:
        """The tests' exit code with this mutant (None: past `timeout`), and the end of their output."""
        try:
            proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                                   *(str(mutants / t) for t in tests)], cwd=mutants, capture_output=True,
                                  env={**env, "MUTANT_UNDER_TEST": key}, timeout=timeout, text=True)
        except subprocess.TimeoutExpired:
            return key, None, "(no output: it ran past its time)"
        return key, proc.returncode, (proc.stdout + proc.stderr)[-3000:]

    def record(key: str, code: int) -> None:
        for meta in (mutants / "src").rglob("*.meta"):
            saved = json.loads(meta.read_text())
            if key in saved["exit_code_by_key"]:
                saved["exit_code_by_key"][key] = code
                meta.write_text(json.dumps(saved, indent=4))

    if not names:
        return 0
    began = time.monotonic()
    _, code, said = one("none", 20 * QUICK_TIMEOUT_S)
    if code != 0:  # no mutant: they must pass, or every mutant would read as killed
        print(f"== {name}: {', '.join(tests)} fail (or hang) without a mutant: nothing recorded\n{said}", flush=True)
        return 1
    # a mutant that runs past three times the tests' own time is stuck (a timeout, as mutmut records one)
    timeout = max(QUICK_TIMEOUT_S, 3 * (time.monotonic() - began))
    killed = stuck = 0
    with ThreadPoolExecutor(jobs) as pool:
        # each result recorded as it comes (in mutmut's own record, as mutmut records a kill), so a run stopped
        # part-way keeps what it found
        for done in as_completed([pool.submit(one, key, timeout) for key in names]):
            key, code, _ = done.result()
            if code == 1:  # a test failed (2-5: pytest itself could not run)
                killed += 1
                record(key, 1)
            elif code is None:
                stuck += 1
                record(key, 36)
            elif code == 0:  # survived: recorded too, so one mutmut had not reached reads as run
                record(key, 0)
            elif code < 0:  # the tests crashed (a signal: a compiled kernel out of bounds): caught, as mutmut counts it
                killed += 1
                record(key, code if code in status_by_exit_code else 1)
    print(f"== {name}: {killed} of {len(names)} killed by {', '.join(tests)}; {stuck} ran past {timeout:.0f} s; "
          f"{(time.monotonic() - began) / 60:.0f} min", flush=True)
    return 0


QUICK_TIMEOUT_S = 180  # at least; three times the tests' own time without a mutant where that is longer


def kept() -> dict[str, str]:
    """Survivors kept on purpose: mutant name (or fnmatch pattern) -> the reason."""
    out = {}
    for line in KEPT.read_text().splitlines() if KEPT.exists() else []:
        if line.strip() and not line.startswith("#"):
            name, _, reason = line.partition(" ")
            out[name] = reason.strip()
    return out


def explained(key: str, reasons: dict[str, str]) -> bool:
    from fnmatch import fnmatch

    return any(fnmatch(key, pattern) for pattern in reasons)


def statuses(name: str, target: Target) -> dict[str, str]:
    """Each mutant of the target -> killed / survived / timeout / no tests / ..., from mutmut's own records."""
    from fnmatch import fnmatch

    from mutmut.stats import status_by_exit_code

    out = {}
    for meta in (STAGE / name / "mutants" / "src").rglob("*.meta"):
        for key, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if any(fnmatch(key, p) for p in target.functions):
                out[key] = status_by_exit_code[code]
    return out


def table(names: list[str]) -> str:
    reasons = kept()
    rows = ["| module | mutants | killed | timeout | survived or no tests: kept with a reason | unexplained | "
            "no tests (of them) | killed share |", "|---|---|---|---|---|---|---|---|"]
    for name in names:
        found = statuses(name, MODULES[name])
        count = {s: sum(1 for v in found.values() if v == s)
                 for s in ("killed", "segfault", "timeout", "survived", "no tests")}
        count["killed"] += count["segfault"]  # the tests crashed with the mutant: caught
        with_reason = sum(1 for k, v in found.items() if v in ("survived", "no tests") and explained(k, reasons))
        unexplained = count["survived"] + count["no tests"] - with_reason
        pending = sum(1 for v in found.values() if v == "not checked")  # a run stopped part-way
        total = len(found) - pending
        share = f"{100 * (count['killed'] + count['timeout']) / total:.0f}%" if total else "not run"
        share += f" ({pending} not run yet)" if pending else ""
        rows.append(f"| {name} | {total} | {count['killed']} | {count['timeout']} | {with_reason} | {unexplained} | "
                    f"{count['no tests']} | {share} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", choices=[[], *MODULES], metavar="MODULE", default=[])
    parser.add_argument("--table", action="store_true", help="print the table of the last runs, run nothing")
    parser.add_argument("--survivors", action="store_true", help="show the unexplained survivors' diffs, run nothing")
    parser.add_argument("--brief", action="store_true", help="the unexplained survivors, one line each, run nothing")
    parser.add_argument("--kept", action="store_true", help="the survivors kept with a reason, one line each with it")
    parser.add_argument("--again", action="store_true",
                        help="run only the last run's survivors, and the mutants it did not reach, again")
    parser.add_argument("--quick", nargs="+", metavar="TEST_FILE",
                        help="run the last run's survivors and unreached mutants against these test files only")
    parser.add_argument("--only", action="append", metavar="PATTERN",
                        help="with --quick: only the mutants whose names match this fnmatch pattern "
                             "(e.g. 'layeringdiff.serve.jobs.*'); given again, those of any of them")
    args = parser.parse_args()
    names = args.modules or list(MODULES)
    if args.survivors or args.brief or args.kept:
        from fnmatch import fnmatch

        mutmut = Path(sys.executable).with_name("mutmut")
        reasons = kept()
        for name in names:
            for key, status in sorted(statuses(name, MODULES[name]).items()):
                if status in ("survived", "no tests") and explained(key, reasons) == args.kept:
                    if args.brief or args.kept:  # one line: the name and the changed line as it became
                        shown = subprocess.run([str(mutmut), "show", key], cwd=STAGE / name, capture_output=True,
                                               text=True).stdout.splitlines()
                        new = [line[1:].strip() for line in shown if line.startswith("+") and
                               not line.startswith("+++")]
                        why = next((r for p, r in reasons.items() if fnmatch(key, p)), "") if args.kept else status
                        print(f"{key.rsplit('.', 1)[-1]} [{why}]: {' | '.join(new)[:160]}", flush=True)
                        continue
                    print(f"# {status}", flush=True)
                    subprocess.run([str(mutmut), "show", key], cwd=STAGE / name)
        return 0
    if args.quick:
        for name in names:
            quick(name, MODULES[name], args.quick, only=tuple(args.only or ("*",)))
    elif not args.table:
        for name in names:
            run(name, MODULES[name], args.again)
    print(table(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
