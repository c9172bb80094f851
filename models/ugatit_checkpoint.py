"""The U-GAT-IT checkpoint format (eo2sar / reference-code compatible) and sargen's extra training state.

A checkpoint is one torch file holding the six state dicts ``genA2B, genB2A, disGA, disGB, disLA,
disLB`` exactly as the U-GAT-IT PyTorch reference code saves them, so it loads there unchanged.
sargen adds, under the key ``sargen_ugatit``, plain values only (loadable with weights_only=True):
the iteration, the options, the optimizer states and the random-number generator states. Plain
reference files (just the six state dicts) load too; they simply have no extra state.
"""


from models.ugatit_networks import Generator, generator_config_from_state_dict
from util.checkpoint import FORMAT_KEY, CheckpointMismatchError, check_version, load_checkpoint, load_state_dict_strict
from util.errors import SargenError

GENERATOR_NAMES = ("genA2B", "genB2A")
DISCRIMINATOR_NAMES = ("disGA", "disGB", "disLA", "disLB")
NETWORK_NAMES = GENERATOR_NAMES + DISCRIMINATOR_NAMES
SARGEN_STATE_KEY = "sargen_ugatit"
CHECKPOINT_SUFFIX = "_net_ugatit.pth"
DEFAULT_IMG_SIZE = 256


def holds_ugatit(payload):
    """Whether a loaded checkpoint payload holds a U-GAT-IT generator (sargen's or the reference code's format)."""
    return isinstance(payload, dict) and any(name in payload for name in GENERATOR_NAMES)


def check_checkpoint(payload, path):
    """Check that a loaded payload holds a U-GAT-IT generator and, if sargen's, its format version; return it."""
    if not holds_ugatit(payload):
        found = ", ".join(sorted(map(str, payload))[:6]) if isinstance(payload, dict) else type(payload).__name__
        raise SargenError(f"{path} is not a U-GAT-IT checkpoint: expected the state dicts "
                          f"{', '.join(NETWORK_NAMES)}, found {found or 'nothing'}")
    if FORMAT_KEY in payload or SARGEN_STATE_KEY in payload:  # reference-code files carry neither
        check_version(payload, path)
    return payload


def read_checkpoint(path):
    """Load a U-GAT-IT checkpoint (weights_only) and check it (check_checkpoint)."""
    return check_checkpoint(load_checkpoint(path, "U-GAT-IT checkpoint"), path)


def sargen_state(payload):
    """sargen's extra state of a checkpoint ({} for a plain reference-format file)."""
    state = payload.get(SARGEN_STATE_KEY)
    return state if isinstance(state, dict) else {}


def saved_options(payload):
    """The options a sargen checkpoint was trained with ({} for a plain file)."""
    return sargen_state(payload).get("options", {})


def network_state(payload, name, path):
    """The state dict `name` of a checkpoint, or an error naming the file and the missing network."""
    if name not in payload:
        present = ", ".join(key for key in payload if key in NETWORK_NAMES)
        raise SargenError(f"{path} has no '{name}' state dict (it has {present}): use a complete U-GAT-IT checkpoint")
    return payload[name]


def generator_from_checkpoint(payload, name, path, img_size=None):
    """Build generator `name` with the hyper-parameters its shapes (and saved options) give, and load it."""
    state = network_state(payload, name, path)
    try:
        config = generator_config_from_state_dict(state)
    except CheckpointMismatchError as error:
        raise CheckpointMismatchError(f"{path} '{name}': {error}") from None
    if config["img_size"] is None:  # light generators' shapes do not depend on img_size
        config["img_size"] = img_size or saved_options(payload).get("img_size") or DEFAULT_IMG_SIZE
    elif img_size and img_size != config["img_size"]:
        raise CheckpointMismatchError(
            f"{path} '{name}' is a full (non-light) generator for {config['img_size']} px images "
            f"(FC.0.weight {list(state['FC.0.weight'].shape)}), not --img_size {img_size}: drop --img_size")
    return load_state_dict_strict(Generator(**config), state, f"{path} '{name}'")


def state_dicts_on_cpu(networks):
    """{name: state dict with CPU tensors} of a {name: module} mapping, in the reference's key layout."""
    return {name: {key: tensor.detach().cpu() for key, tensor in network.state_dict().items()}
            for name, network in networks.items()}
