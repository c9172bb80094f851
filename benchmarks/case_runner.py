"""Benchmark cases in their own processes, so that each case's peak memory (ru_maxrss) is its own."""

import json
import resource
import subprocess
import sys

import torch


def run_case(script, name, case_args):
    """Run case `name` of benchmark `script` (its --case/--case_args hook, with this run's options); its JSON result."""
    command = [sys.executable, str(script), "--case", name, "--case_args", json.dumps(case_args), *sys.argv[1:]]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"case {name} {case_args} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def peak_memory_mb(device):
    """Peak memory of this process: torch's CUDA peak allocation, else the peak resident set."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def start(args):
    """Use --threads torch threads; stop at once when --device asks for CUDA and there is none."""
    torch.set_num_threads(args.threads)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available here")


def answer_case(args, cases):
    """In a case's own process (--case NAME): run cases[NAME] with --case_args and print its JSON result with the
    peak memory; False in the benchmark's main process."""
    if not args.case:
        return False
    result = cases[args.case](args, **json.loads(args.case_args))
    result["peak_mb"] = peak_memory_mb(args.device)
    print(json.dumps(result))
    return True
