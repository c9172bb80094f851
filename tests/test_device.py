"""Tests of util/device.py's CPU memory reuse and the option that turns it off."""

import ctypes
import ctypes.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.file_translation import app_main
from options.train_options import TrainOptions
from util import device
from util.errors import SargenError

ROOT = Path(__file__).resolve().parents[1]

# Frees a 64 MiB tensor and prints how many MiB of free memory glibc's heap holds afterwards.
FREED_MEMORY_PROBE = """
import ctypes, sys
import torch
from util.device import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]
libc = ctypes.CDLL(sys.argv[2])
libc.mallinfo2.restype = MallInfo2
tensor = torch.ones(16 * 2**20)
del tensor
print(libc.mallinfo2().fordblks // 2**20)
"""


def glibc_with_mallinfo2():
    """The C library's path when it is glibc 2.33 or newer (mallinfo2), else None."""
    name = ctypes.util.find_library("c")
    try:
        return name if name and hasattr(ctypes.CDLL(name), "mallinfo2") else None
    except OSError:
        return None


def free_heap_mib_after_freeing_64_mib(mode):
    """Run the probe in a fresh process with memory reuse ('keep') or the C library's defaults ('system')."""
    completed = subprocess.run([sys.executable, "-c", FREED_MEMORY_PROBE, mode, glibc_with_mallinfo2()],
                               capture_output=True, text=True, cwd=ROOT, check=True)
    return int(completed.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(glibc_with_mallinfo2() is None, reason="needs glibc 2.33+ (mallinfo2)")
def test_freed_memory_stays_in_the_heap_for_reuse():
    """With reuse a freed 64 MiB tensor stays in malloc's heap; by default it goes back to the system."""
    assert free_heap_mib_after_freeing_64_mib("keep") >= 64
    assert free_heap_mib_after_freeing_64_mib("system") < 64


# Allocates and frees in three threads in turn, then has glibc print its arenas (malloc_stats, to stderr).
ARENAS_PROBE = """
import ctypes, sys, threading
import torch
from util.device import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
for _ in range(3):
    thread = threading.Thread(target=lambda: torch.ones(4 * 2**20).sum())
    thread.start()
    thread.join()
ctypes.CDLL(sys.argv[2]).malloc_stats()
"""


def malloc_arenas(mode):
    """How many malloc arenas the probe's process ended with, with memory reuse ('keep') or the defaults."""
    completed = subprocess.run([sys.executable, "-c", ARENAS_PROBE, mode, glibc_with_mallinfo2()],
                               capture_output=True, text=True, cwd=ROOT, check=True)
    return sum(line.startswith("Arena ") for line in completed.stderr.splitlines())


@pytest.mark.skipif(glibc_with_mallinfo2() is None, reason="needs glibc 2.33+")
def test_with_reuse_threads_share_one_arena():
    """With reuse every thread allocates from one arena, so what a thread freed serves the next (the tiler's
    statistics pass runs sub-batches in threads); by default glibc gives threads arenas of their own."""
    assert malloc_arenas("keep") == 1
    assert malloc_arenas("system") > 1


@pytest.mark.parametrize("flag, calls", [([], 1), (["--system_allocator"], 0)])
def test_cpu_runs_reuse_memory_unless_system_allocator(monkeypatch, tmp_path, flag, calls):
    """train.py/test.py options and app.py on the CPU turn memory reuse on; --system_allocator does not."""
    recorded = []
    monkeypatch.setattr(device, "keep_freed_memory", lambda: recorded.append(True))
    TrainOptions().parse(["--model", "ugatit", "--gpu_ids", "-1", *flag], save=False)
    assert len(recorded) == calls
    with pytest.raises(SargenError):  # stops at the missing checkpoint, after choosing the device
        app_main(["--model_path", str(tmp_path / "missing.pth"), "--img", str(tmp_path), "--device", "cpu", *flag])
    assert len(recorded) == 2 * calls


@pytest.mark.parametrize("cap, allowed", [(None, True), ("AVX2", False), ("avx512_core", False), ("SSE41", False),
                                          ("AVX512_CORE_BF16", True), ("avx512_core_amx", True), ("ALL", True)])
def test_auto_precision_follows_the_onednn_isa_cap(monkeypatch, cap, allowed):
    """ONEDNN_MAX_CPU_ISA below AVX512_CORE_BF16 makes the CPU compute as one without bfloat16 instructions, so
    --precision auto stays float32 there (as on such a CPU: the AVX2 rerun of the numerics tests relies on it)."""
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if cap is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert device.onednn_may_use_bfloat16() is allowed
    if not allowed:
        assert not device.cpu_supports_bfloat16()
        assert device.autocast_dtype(torch.device("cpu"), "auto") is None
