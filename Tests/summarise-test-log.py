#!/usr/bin/env python3
"""Reads a `swift test` log (Swift Testing's event lines) and prints, last of all:

- each skipped test with its reason, so that no skip goes unseen in a long log;
- when the run was stopped by its time limit, the tests that had started and not finished:
  the ones that ran long;
- one closing line, `tests: N passed, N failed, N skipped`.

Exits 1 when the log holds no test result at all (a run that tested nothing has not passed).
"""
import re
import sys

path = sys.argv[1]
timed_out = int(sys.argv[sys.argv.index("--timed-out") + 1]) if "--timed-out" in sys.argv else 0
# "◇ Test x() started.", "✔ Test x() passed after 0.1 seconds.", "✘ Test x() failed after …",
# "➜ Test x() skipped: "reason"" (a condition trait), "➜ Test x() was cancelled after 0.1 seconds:
# "skipped: reason"" (Skip.unless) — and not "✘ Test x() recorded an issue … Expectation failed".
# A test's name is a function, `name(label:)`, or a display name in quotes.
event = re.compile(r'^\S+ Test (?P<name>"[^"]*"|[^\s"]+\([^)]*\))(?: with \d+ test cases?)? (?P<what>started|passed|failed|skipped|was cancelled)(?P<rest>\.$| after .*|: .*|$)')
started, finished, passed, failed, skipped = {}, set(), 0, 0, []
with open(path, encoding="utf-8", errors="replace") as log:
    for line in log:
        match = event.match(line.rstrip("\n"))
        if not match:
            continue
        name, what, rest = match["name"], match["what"], match["rest"]
        if what == "started":
            started[name] = started.get(name, 0) + 1
            continue
        finished.add(name)
        if what == "passed":
            passed += 1
        elif what == "failed":
            failed += 1
        else:
            skipped.append((name, rest.split(": ", 1)[-1].strip() if ": " in rest else ""))

for name, reason in skipped:
    print(f"skipped: {name}: {reason or 'no reason given'}")
if timed_out:
    running = [name for name in started if name not in finished]
    print(f"The test run was stopped by its time limit ({timed_out} s). Still running then:")
    for name in running or ["(none: the time went between tests)"]:
        print(f"  {name}")
print(f"tests: {passed} passed, {failed} failed, {len(skipped)} skipped")
sys.exit(0 if passed + failed > 0 else 1)
