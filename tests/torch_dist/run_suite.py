"""Runs PyTorch's distributed test suite (dist_suite.py) for one backend and world size, and
compares the outcome with the list of tests expected to pass there.

    /usr/bin/python3 run_suite.py --backend ringfuse --world-size 2 \
        --expected expected/ringfuse-2.txt [-k allreduce ...] [--write-passed FILE]

Exit status 1 when a test of the expected list did not pass (a regression, or a test missing
from the suite), else 0. Tests that pass without being listed are named, so the list can grow
(`--write-passed` writes the names of the tests that passed, for that). The last line sums up.
Needs ringfuse on PYTHONPATH for --backend ringfuse (CTest sets it to the build's python/).
"""

import argparse
import os
import re
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
# torch's test utilities import expecttest, which Debian lacks: our stand-in, for this runner
# only. The spawned ranks inherit sys.path from this process.
sys.path.insert(0, os.path.join(HERE, "stubs"))
sys.path.insert(0, HERE)


class RecordingResult(unittest.TextTestResult):
    """A text result that also keeps each test's outcome by its method name."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.outcomes = {}

    def _record(self, test, outcome, detail=""):
        self.outcomes[test.id().rsplit(".", 1)[-1]] = (outcome, detail)

    def addSuccess(self, test):
        super().addSuccess(test)
        self._record(test, "passed")

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._record(test, "skipped", reason)

    @staticmethod
    def _cause(err):
        """The rank's own exception line when the error carries a rank's traceback (the suite
        reports "Process 1 exited with error code 10 and exception:" and the traceback)."""
        lines = [line.strip() for line in str(err[1]).splitlines() if line.strip()]
        raised = [line for line in lines if re.match(r"^[\w.]+(Error|Exception): ", line)]
        return (raised or lines or [err[0].__name__])[-1]

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record(test, "failed", self._cause(err))

    def addError(self, test, err):
        super().addError(test, err)
        self._record(test, "failed", self._cause(err))

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._record(test, "passed")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._record(test, "failed", "unexpected success")


def read_expected(path):
    with open(path) as listing:
        return [line.split("#", 1)[0].strip() for line in listing
                if line.split("#", 1)[0].strip()]


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", required=True, choices=["ringfuse", "gloo"])
    parser.add_argument("--world-size", type=int, required=True)
    parser.add_argument("--expected", help="file naming the tests that must pass (one a line)")
    parser.add_argument("-k", dest="patterns", action="append", default=[],
                        help="run only tests whose name matches (unittest's -k); repeatable")
    parser.add_argument("--write-passed", help="write the names of the tests that passed here")
    return parser.parse_args()


def main():
    args = parse_arguments()
    # Read at import time by torch's suite, and inherited by every spawned rank.
    os.environ["BACKEND"] = args.backend
    os.environ["WORLD_SIZE"] = str(args.world_size)
    # torch's common_utils parses sys.argv when imported (here and in each rank): ours would
    # confuse it.
    sys.argv = sys.argv[:1]

    import dist_suite

    loader = unittest.TestLoader()
    if args.patterns:
        loader.testNamePatterns = [p if "*" in p else f"*{p}*" for p in args.patterns]
    suite = loader.loadTestsFromTestCase(dist_suite.TestDistBackendWithSpawn)

    started = time.monotonic()
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2,
                                     resultclass=RecordingResult)
    result = runner.run(suite)
    elapsed = time.monotonic() - started

    outcomes = result.outcomes
    counts = {kind: sum(1 for o, _ in outcomes.values() if o == kind)
              for kind in ("passed", "failed", "skipped")}
    passed = sorted(name for name, (o, _) in outcomes.items() if o == "passed")
    if args.write_passed:
        with open(args.write_passed, "w") as listing:
            listing.write("".join(name + "\n" for name in passed))

    status = 0
    label = f"torch-dist {args.backend} world size {args.world_size}"
    if args.expected:
        expected = read_expected(args.expected)
        selected = set(outcomes) if args.patterns else None
        regressions = [name for name in expected
                       if (selected is None or name in selected)
                       and outcomes.get(name, ("missing", ""))[0] != "passed"]
        for name in regressions:
            outcome, detail = outcomes.get(name, ("missing from the suite", ""))
            print(f"REGRESSION {label}: {name} is expected to pass but {outcome}"
                  + (f": {detail}" if detail else ""))
        for name in sorted(set(passed) - set(expected)):
            print(f"NEW PASS {label}: {name} passes but is not in {args.expected}; add it")
        status = 1 if regressions else 0
        print(f"{label}: {len(expected)} tests expected to pass, "
              f"{len(regressions)} did not")
    print(f"{label}: {len(outcomes)} tests in {elapsed:.0f} s")
    print(f"summary: {counts['passed']} passed, {counts['failed']} failed, "
          f"{counts['skipped']} skipped")
    return status


if __name__ == "__main__":
    sys.exit(main())
