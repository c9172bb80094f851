"""Device choice from pix2pix's --gpu_ids (falling back to the CPU with one warning) and CPU memory reuse."""

import ctypes
import ctypes.util
import logging
import os

import torch

logger = logging.getLogger("sargen")


def parse_gpu_ids(text):
    """Parse '0,1' or '-1' into a list of GPU indices (empty for the CPU)."""
    ids = [int(part) for part in str(text).split(",") if part.strip() != ""]
    return [gpu_id for gpu_id in ids if gpu_id >= 0]


def select_device(gpu_ids):
    """The torch device for `gpu_ids`: the first GPU, or the CPU when none is asked for or available."""
    if not gpu_ids:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        logger.warning("CUDA is not available: running on the CPU (pass --gpu_ids -1 to silence this)")
        return torch.device("cpu")
    if gpu_ids[0] >= torch.cuda.device_count():
        logger.warning("GPU %d does not exist (%d found): using cuda:0", gpu_ids[0], torch.cuda.device_count())
        return torch.device("cuda:0")
    return torch.device(f"cuda:{gpu_ids[0]}")


MAX_DATA_WORKERS = 4


def usable_cpu_count():
    """CPUs this process may run on (its affinity mask where the system has one, else all of them)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_data_workers():
    """The --num_threads default: min(4, CPUs per local process - 1), at least 0, so the main process keeps a core."""
    local_processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))  # torchrun ranks on this machine
    return max(0, min(MAX_DATA_WORKERS, usable_cpu_count() // local_processes - 1))


def cpu_supports_bfloat16():
    """Whether this CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX) that oneDNN may use, where autocast
    pays off."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False
    return ("avx512_bf16" in flags or "amx_bf16" in flags) and onednn_may_use_bfloat16()


def onednn_may_use_bfloat16():
    """Whether ONEDNN_MAX_CPU_ISA (or its old name DNNL_MAX_CPU_ISA), if set, allows bfloat16 instructions: a cap
    such as AVX2 makes the CPU compute like one without them, so auto precision stays float32 there too."""
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
    return cap in ("", "ALL", "DEFAULT") or cap.startswith(ONEDNN_BFLOAT16_ISAS)


def autocast_dtype(device, precision):
    """The autocast dtype for --precision (auto|float32|bfloat16) on `device`, or None for float32."""
    if precision == "float32":
        return None
    if precision == "bfloat16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if cpu_supports_bfloat16() else None


# oneDNN's ISA names (ONEDNN_MAX_CPU_ISA) from which on bfloat16 arithmetic is native: AVX512_CORE_BF16 and above
ONEDNN_BFLOAT16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX10_")

# mallopt() parameters of glibc's malloc.h
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -2, -3, -8
_LARGEST_INT = 2**31 - 1
_TOP_PAD_BYTES = 2**30


def keep_freed_memory():
    """Make glibc's malloc keep and reuse freed memory instead of handing it back; True where applied.

    Training on a CPU allocates and frees activation-sized blocks all step long. By default glibc maps
    each large block afresh and unmaps it when freed, so every step pays page faults to refill memory it
    just gave back: a 256 px U-GAT-IT step takes 16.7 s that way and 13.7 s with this. The memory a
    process freed stays reserved to it until it exits; --system_allocator keeps the defaults. All threads share
    one arena: by default glibc gives threads arenas of their own, each keeping what its thread freed, so memory
    grew with the threads that ever allocated (the tiler's statistics pass runs sub-batches in threads, one at a
    time: a 1500 x 1500 scene peaked at 1.30 GB with an arena per thread, 0.98 GB with one).
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:  # not glibc (macOS, musl): nothing to tune
        return False
    settings = ((_M_MMAP_THRESHOLD, _LARGEST_INT), (_M_TRIM_THRESHOLD, _LARGEST_INT), (_M_TOP_PAD, _TOP_PAD_BYTES),
                (_M_ARENA_MAX, 1))
    applied = all(mallopt(ctypes.c_int(option), ctypes.c_int(value)) == 1 for option, value in settings)
    logger.debug("malloc keeps freed memory: %s", applied)
    return applied


def add_allocator_option(parser):
    """Add --system_allocator, the way out of keep_freed_memory()."""
    parser.add_argument("--system_allocator", action="store_true",
                        help="on the CPU, keep the C allocator's defaults instead of reusing freed memory "
                             "(sargen's default: faster, but the process keeps its peak memory)")


def reuse_memory_on_cpu(device, system_allocator):
    """keep_freed_memory() for a run on the CPU, unless --system_allocator asks for the C library's defaults."""
    if torch.device(device).type == "cpu" and not system_allocator:
        keep_freed_memory()
