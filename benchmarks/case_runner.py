"""Benchmark cases in their own processes, so that each case's peak memory (ru_maxrss) is its own."""

import json
import subprocess
import sys


def run_case(script, name, case_args):
    """Run case `name` of benchmark `script` (its --case/--case_args hook, with this run's options); its JSON result."""
    command = [sys.executable, str(script), "--case", name, "--case_args", json.dumps(case_args), *sys.argv[1:]]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"case {name} {case_args} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])
