"""app.py against the published eo2sar app (starhopp3r/eo2sar, app.py): the same output for 8-bit images of any size.

The published app opens the image with Pillow, resizes it with torchvision's Resize on the PIL image (Pillow's
bilinear filter on the 8-bit image), maps it to [-1, 1] (ToTensor, Normalize 0.5/0.5), runs genA2B in float32,
maps the output back (x * 0.5 + 0.5), resizes it to --out_img_size with torchvision's Resize on the tensor, and
writes x * 255 with OpenCV (rounded to the nearest level, saturated). published_app_output is a reference of that
preprocessing, written here for the tests; the networks themselves are tested against the reference code in
test_ugatit_networks.py.
"""

import numpy as np
import pytest
import torch
from PIL import Image
from test_app import smooth_texture
from torchvision import transforms
from ugatit_helpers import one_torch_thread, perturbed_generators  # noqa: F401  (autouse fixture)

from data.image_io import read_image, tensor_to_uint8
from models.file_translation import app_main
from models.translators import load_translator

pytestmark = pytest.mark.numerics  # outputs against the published app's at a tolerance

NGF, BLOCKS, IMG_SIZE = 16, 4, 256  # the published model: light, 4 blocks, 256 px (and ngf 64: slower, same code)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An eo2sar-format checkpoint (3 -> 3 channels, light) with every weight perturbed by 0.02 x randn."""
    path = tmp_path_factory.mktemp("ckpt") / "eo2sar_params_latest.pt"
    torch.save(perturbed_generators(ngf=NGF, n_blocks=BLOCKS, img_size=IMG_SIZE, input_nc=3, output_nc=3), path)
    return path


def published_app_output(image_path, generator, img_size=IMG_SIZE, out_img_size=256):
    """The 8-bit RGB image the published eo2sar app writes for `image_path` (a test reference, see above)."""
    to_model = transforms.Compose([transforms.Resize((img_size, img_size)), transforms.ToTensor(),
                                   transforms.Normalize(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))])
    with Image.open(image_path) as image:
        real = to_model(image)[None]
    with torch.no_grad():
        fake = generator(real)[0][0] * 0.5 + 0.5
    if out_img_size != img_size:
        fake = transforms.Resize((out_img_size, out_img_size))(fake)
    return np.clip(np.rint(fake.numpy().transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)


def eight_bit_image(path, height, width, seed):
    """Save a seeded optical-looking 8-bit RGB image (PNG or JPEG by suffix) of height x width."""
    pixels = (smooth_texture(height, width, seed=seed).numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=95) if path.suffix == ".jpg" else Image.fromarray(pixels).save(path)
    return path


@pytest.mark.parametrize(("name", "size", "out_img_size"), [
    ("s2_patch.png", (224, 224), 256),  # Sentinel-2 patches are 224 px: resized up, as the issue measured
    ("photo.jpg", (170, 300), 256),  # any shape: resized to a square, as the published app does
    ("tile.png", (256, 256), 256),  # no resize at all
    ("large.png", (400, 320), 300),  # resized down, output resized to --out_img_size
])
def test_eight_bit_inputs_give_the_published_apps_output(checkpoint, tmp_path, name, size, out_img_size):
    """float32 app.py output is within 1 grey level of the published app's, for 8-bit images of any size."""
    path = eight_bit_image(tmp_path / name, *size, seed=len(name))
    app_main(["--model_path", str(checkpoint), "--img", str(path), "--out", str(tmp_path / "out.png"),
              "--out_img_size", str(out_img_size), "--precision", "float32", "--device", "cpu"])
    written = np.asarray(Image.open(tmp_path / "out.png")).astype(int)
    generator = load_translator(checkpoint, precision="float32").generator
    expected = published_app_output(path, generator, out_img_size=out_img_size).astype(int)
    assert written.shape == expected.shape == (out_img_size, out_img_size, 3)
    assert np.abs(written - expected).max() <= 1


def test_resizing_the_float_image_instead_would_fail_the_check(checkpoint, tmp_path):
    """The check above can fail: resizing the float image (sargen's former path) differs by 9 grey levels here."""
    path = eight_bit_image(tmp_path / "s2_patch.png", 224, 224, seed=12)
    translator = load_translator(checkpoint, precision="float32")
    source = read_image(path, 3) * 2 - 1
    resized = torch.nn.functional.interpolate(source[None], size=(IMG_SIZE, IMG_SIZE), mode="bilinear",
                                              antialias=True).clamp(-1, 1)
    former = tensor_to_uint8(translator(resized)[0][0], (-1, 1)).astype(int)
    expected = published_app_output(path, translator.generator).astype(int)
    assert np.abs(former - expected).max() > 1
