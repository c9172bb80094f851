"""Several processes started by torchrun: the process group, each rank's device and the collectives sargen uses.

`torchrun --nproc_per_node K script.py ...` starts K processes with WORLD_SIZE, RANK and LOCAL_RANK in their
environment. With WORLD_SIZE > 1, init_from_env joins them in a process group (NCCL on GPUs, gloo on the CPU)
and gives each rank its own device. Without torchrun, or with one process, nothing here starts a process
group: rank() is 0, world_size() is 1 and every collective returns its input unchanged.
"""

import contextlib
import inspect
import logging
import os

import torch
import torch.distributed as dist

from util.device import select_device
from util.errors import SargenError

logger = logging.getLogger("sargen")


def launched_processes():
    """How many processes torchrun started (WORLD_SIZE), 1 without torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed():
    """Whether this process is one rank of a process group."""
    return dist.is_available() and dist.is_initialized()


def rank():
    """This process's rank, 0 without a process group."""
    return dist.get_rank() if is_distributed() else 0


def world_size():
    """The number of ranks, 1 without a process group."""
    return dist.get_world_size() if is_distributed() else 1


def is_main():
    """Whether this process is rank 0, the one that writes checkpoints, logs and pages."""
    return rank() == 0


def rank_device(gpu_ids):
    """This rank's device: the LOCAL_RANK-th of --gpu_ids when it lists one per local process, else
    cuda:LOCAL_RANK when --gpu_ids asks for GPUs, else the CPU."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if not gpu_ids:
        return select_device([])
    return select_device([gpu_ids[local_rank] if len(gpu_ids) >= local_processes else local_rank])


def init_from_env(gpu_ids, timeout=None):
    """This process's device; under torchrun with several processes also join the process group (once).

    `timeout` (a timedelta) bounds how long a collective waits for the other ranks (default: torch's).
    """
    if launched_processes() <= 1:
        return select_device(gpu_ids)
    device = rank_device(gpu_ids)
    if is_distributed():
        return device
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend, device_id=device if device.type == "cuda" else None,
                                **({"timeout": timeout} if timeout is not None else {}))
    except (RuntimeError, ValueError) as error:
        address = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        raise SargenError(f"cannot join the torchrun process group at {address} ({backend}): "
                          f"{str(error).strip().splitlines()[0]}") from None
    if not is_main():
        logger.setLevel(logging.WARNING)  # one rank reports; the others only warn or fail
    logger.info("process group: %d ranks (%s), rank 0 on %s", world_size(), backend, device)
    return device


def teardown():
    """Leave the process group, if this process joined one."""
    if is_distributed():
        dist.destroy_process_group()


@contextlib.contextmanager
def collective(what):
    """Turn the failure of a collective (typically: another rank stopped) into a one-line error."""
    try:
        yield
    except RuntimeError as error:  # torch.distributed.DistError included
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SargenError(f"{what} failed, most likely because another rank stopped (see its error): "
                          f"{reason}") from None


def shard(items):
    """This rank's share of `items`: every world_size()-th item from position rank(), without padding or repeats."""
    return list(items)[rank()::world_size()]


def collective_device():
    """The device tensors must be on for collectives: the rank's GPU with NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(tensors):
    """{key: tensor} summed over the ranks (one collective per dtype); every rank must hold the same keys and shapes."""
    if not is_distributed():
        return dict(tensors)
    device = collective_device()
    keys = sorted(tensors, key=str)
    summed = {}
    for dtype in sorted({tensors[key].dtype for key in keys}, key=str):
        group = [key for key in keys if tensors[key].dtype == dtype]
        flat = torch.cat([tensors[key].detach().to(device).reshape(-1) for key in group])
        with collective("summing over the ranks"):
            dist.all_reduce(flat)
        for key, piece in zip(group, flat.split([tensors[key].numel() for key in group])):
            summed[key] = piece.view(tensors[key].shape).to(tensors[key].device)
    return {key: summed[key] for key in tensors}


def all_reduce_mean(tensors):
    """{key: tensor} averaged over the ranks; every rank must hold the same keys and shapes."""
    count = world_size()
    return {key: value / count for key, value in all_reduce_sum(tensors).items()} if count > 1 else dict(tensors)


def with_keys_of_all_ranks(tensors):
    """`tensors` plus zeros for the keys that only other ranks hold (with their shapes and dtypes)."""
    if not is_distributed():
        return dict(tensors)
    specs = [None] * world_size()
    with collective("exchanging the ranks' keys"):
        dist.all_gather_object(specs, {key: (tuple(value.shape), value.dtype) for key, value in tensors.items()})
    completed = dict(tensors)
    device = next(iter(tensors.values())).device if tensors else collective_device()
    for spec in specs:
        for key, (shape, dtype) in spec.items():
            if key not in completed:
                completed[key] = torch.zeros(shape, dtype=dtype, device=device)
    return completed


def gather_objects(value):
    """[every rank's `value`, in rank order] on rank 0, None on the other ranks; [value] without a process group."""
    if not is_distributed():
        return [value]
    gathered = [None] * world_size() if is_main() else None
    with collective("gathering the ranks' results"):
        dist.gather_object(value, gathered, dst=0)
    return gathered


def broadcast_object(value):
    """Rank 0's `value` on every rank (`value` itself without a process group)."""
    if not is_distributed():
        return value
    holder = [value]
    with collective("receiving rank 0's data"):
        dist.broadcast_object_list(holder, src=0)
    return holder[0]


def wrap(module, device):
    """`module` in DistributedDataParallel over the ranks, or `module` itself without a process group.

    Buffers are not broadcast at every forward: sargen's modules keep no buffer that could drift apart
    between ranks (spectral norm's power-iteration vectors follow the weights, which stay identical).
    """
    if not is_distributed():
        return module
    from torch.nn.parallel import DistributedDataParallel

    # torch 2.15 renamed broadcast_buffers (forward and initial sync) to forward_sync_buffers (forward only).
    no_forward_sync = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(
        DistributedDataParallel).parameters else "broadcast_buffers")
    return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None,
                                   **{no_forward_sync: False})
