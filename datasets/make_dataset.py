"""Make small, deterministic synthetic example data: ``x2ka`` (paired X/Ka PolSAR), ``eo2sar`` (EO/SAR) and
``sen12ms`` (a miniature SEN12MS tree: Sentinel-2 reflectance and Sentinel-1 dB GeoTIFF patches of the same
scenes, georeferenced, for --dataset_mode sen12ms).

Physical model (one scene = one land-cover map, rendered by every sensor):
- Land cover: water, vegetation, farmland (rectangular parcels of four crop types with 3-5 px row structure),
  urban blocks (buildings with heights) and roads, built from smooth Gaussian random fields, shapes and curves;
  each scene is built to be dominated by a chosen class, which names the file (``farmland_0007.png``).
- Backscatter: a table of mean sigma0 (dB) per class, polarization (HH, HV, VV) and band plus the HH-VV correlation;
  vegetation volume and surface roughness are relatively stronger at Ka, water and asphalt brighter at Ka
  (capillary waves, roughness comparable to the 8 mm wavelength), urban double bounce strong in both bands.
  Modulations: crop type and rows, canopy texture, terrain slope, and for buildings (radar looking from the left,
  35 deg incidence) a bright double-bounce wall line, layover in front and a shadow behind; plus a noise floor.
- Speckle: multiplicative, from L independent looks of circular complex Gaussian fields low-pass filtered to the
  band's grain (X: 3 looks, coarse grain; Ka: 6 looks, fine grain), so intensity is Gamma(L, 1/L) distributed.
- Rendering: Pauli RGB (R = |HH-VV|^2/2 double bounce, G = 2|HV|^2 volume, B = |HH+VV|^2/2 surface) with one
  fixed dB window per channel for both bands; SAR grayscale = VV intensity in the -25..0 dB window; optical RGB =
  class colours (blue water, textured green vegetation, crop tones with rows, grey roofs with cast shadows, asphalt)
  shaded by the sun over a random terrain height field.

``sen12ms --known_mapping`` writes the same tree for learning checks of paired models, with a mapping known
exactly: each pixel is a mixture of vegetation, urban and water (abundances from smooth random fields);
Sentinel-2 is the abundance-weighted class spectra, Sentinel-1 VV/VH the abundance-weighted C-band class
backscatter (dB) times 4-look speckle, so Sentinel-1 is a fixed function of the Sentinel-2 bands plus speckle.

Every scene uses its own ``numpy.random.Generator`` seeded with ``--seed`` + a fixed offset per folder + the index,
so the output is byte-identical between runs.

Pairing: images of a split share a file name exactly when they show the same scene. x2ka's A and B folders are
co-registered (the same scene in both bands under the same name). eo2sar's training folders are unpaired (trainA
holds scenes 0..N-1, trainB scenes N..2N-1, so no name is in both) and its test folders co-registered (testB/NAME
is the SAR rendering of the scene of testA/NAME). Each dataset records this in OUT/pairing.json (data/pairing.py).
"""

import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from tqdm import tqdm

# Run as a script (`python datasets/make_dataset.py`), Python puts datasets/ and not the repository root on
# sys.path; add the root so that the project's packages (data, util) import from any working directory.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from data.base_dataset import CATEGORIES  # noqa: E402  (label index = position; also the file-name prefix)
from data.image_io import RasterInfo, write_image, write_raster, written_by_sargen  # noqa: E402
from data.pairing import PAIRING_FILE, write_pairing  # noqa: E402
from options.number_types import MAX_NETWORK_SIDE, integer, seed  # noqa: E402
from util.cli import ArgumentParser, run_main  # noqa: E402
from util.errors import SargenError  # noqa: E402
from util.fileio import check_output  # noqa: E402

BUILDING, FARMLAND, ROAD, VEGETATION, WATER = range(len(CATEGORIES))
POLARIZATIONS = ("HH", "HV", "VV")
MAX_SCENES = 100_000  # scenes per folder (--n_train, --n_test, --n_scenes)
NAME_PATTERN = re.compile(r"^(" + "|".join(CATEGORIES) + r")_\d{4,}\.png$")

# Mean sigma0 in dB per band, class (CATEGORIES order) and polarization (HH, HV, VV), and the HH-VV correlation.
SIGMA0_DB = {
    "X": np.array([
        [-4.0, -16.0, -7.0],     # building: dihedral (double-bounce) dominated block average, HH > VV
        [-11.0, -19.0, -12.0],   # farmland: rough surface plus some crop volume
        [-20.0, -30.0, -18.0],   # road: asphalt is smooth at 3 cm wavelength, dark
        [-9.0, -14.0, -9.0],     # vegetation: canopy volume scattering, strong HV
        [-24.0, -32.0, -20.0],   # water: specular, dark, VV > HH
    ]),
    "Ka": np.array([
        [-4.5, -15.0, -6.5],     # building: double bounce strong in both bands
        [-8.0, -15.0, -8.0],     # farmland: roughness relatively larger at 8 mm, brighter and more depolarized
        [-14.0, -24.0, -13.0],   # road: asphalt texture is rough at Ka, much brighter than at X
        [-7.0, -11.0, -7.0],     # vegetation: leaves and twigs scatter strongly, volume (HV) relatively stronger
        [-20.0, -29.0, -16.0],   # water: capillary waves give Bragg scattering, slightly brighter than at X
    ]),
    "C": np.array([  # Sentinel-1 (the sen12ms example data): typical IW VV/VH levels
        [-3.5, -15.0, -6.5],     # building
        [-11.0, -18.5, -11.5],   # farmland
        [-19.0, -28.0, -17.5],   # road
        [-8.5, -14.0, -9.0],     # vegetation: forest VV about -8 dB, VH about -14 dB
        [-25.0, -32.0, -22.0],   # water: calm water near the noise floor
    ]),
}
HHVV_CORRELATION = {  # real part of the HH-VV correlation: > 0 odd bounce (surface), < 0 double bounce
    "X": np.array([-0.4, 0.5, 0.7, 0.3, 0.8]),
    "Ka": np.array([-0.4, 0.4, 0.6, 0.2, 0.8]),
    "C": np.array([-0.4, 0.5, 0.7, 0.3, 0.8]),
}
CROP_OFFSETS_DB = np.array([  # per crop type, (HH, HV, VV) offsets added to the farmland sigma0
    [0.0, 0.0, 0.0],    # ripe cereal
    [1.5, 3.0, 1.5],    # green crop: more volume
    [-2.0, -4.0, -2.0], # bare soil: smoother, little depolarization
    [-1.0, -1.0, -1.0], # stubble
])
CROP_COLOURS = np.array([(0.55, 0.52, 0.30), (0.30, 0.45, 0.18), (0.45, 0.36, 0.25), (0.62, 0.58, 0.42)])
BUILDING_FEATURES_DB = {  # (HH, HV, VV) offsets to the building sigma0 and the HH-VV correlation of each feature
    "roof": (np.array([-4.0, -3.0, -2.0]), 0.4),
    "wall": (np.array([8.0, 2.0, 8.0]), -0.9),
}
LAYOVER_DB, SHADOW_DB, SLOPE_GAIN_DB = 3.0, -20.0, 6.0
INCIDENCE_DEG = 35.0  # radar looks from the left (near range at x = 0)
SUN_AZIMUTH_DEG, SUN_ELEVATION_DEG = 315.0, 45.0  # sun in the north-west (upper left), as in map hillshades
PAULI_WINDOWS_DB = ((-26.0, -1.0), (-27.0, -5.0), (-23.0, 2.0))  # R double bounce, G volume, B surface
SAR_GRAY_WINDOW_DB = (-25.0, 0.0)

# Scene seed = --seed + offset of the folder + index, so that every folder holds different scenes.
SEED_OFFSETS = {
    ("x2ka", "train"): 0, ("x2ka", "test"): 100_000,
    ("eo2sar", "trainA"): 200_000, ("eo2sar", "test"): 300_000,  # test: one scene rendered into testA and testB
    ("eo2sar", "trainB"): 400_000,
}
DEFAULTS = {"x2ka": {"n_train": 24, "n_test": 6}, "eo2sar": {"n_train": 24, "n_test": 6}}


@dataclass(frozen=True)
class Band:
    """Sensor parameters of one radar band."""

    name: str
    frequency_ghz: float
    looks: int             # number of independent looks averaged (equivalent number of looks)
    grain: float           # speckle correlation length in pixels (Gaussian impulse response sigma)
    noise_floor_db: float  # noise-equivalent sigma0
    row_amplitude_db: float  # modulation depth of farmland rows


BANDS = {
    "X": Band("X", 9.6, looks=3, grain=1.5, noise_floor_db=-30.0, row_amplitude_db=1.5),
    "Ka": Band("Ka", 35.75, looks=6, grain=0.6, noise_floor_db=-28.0, row_amplitude_db=1.0),
    "C": Band("C", 5.405, looks=4, grain=1.0, noise_floor_db=-24.0, row_amplitude_db=1.5),  # Sentinel-1 IW GRD
}


@dataclass
class Scene:
    """One land-cover scene: the class map and the layers that the sensors render."""

    labels: np.ndarray           # HxW uint8 index into CATEGORIES
    texture: np.ndarray          # HxW fine-scale unit-variance field (canopy crowns, surface texture)
    terrain: np.ndarray          # HxW terrain height in pixels
    crop: np.ndarray             # HxW crop type (CROP_COLOURS index) in farmland, -1 elsewhere
    rows: np.ndarray             # HxW row pattern in [-1, 1] in farmland, 0 elsewhere
    building_height: np.ndarray  # HxW height in pixels of roofs, 0 elsewhere
    roof_tone: np.ndarray        # HxW per-building roof brightness in [0, 1]
    dominant: str                # the dominant category (most pixels)


# ---------------------------------------------------------------- land cover


def gaussian_transfer(size, sigma):
    """Frequency response (size x size, FFT order) of a Gaussian blur with standard deviation `sigma` pixels."""
    freq = np.fft.fftfreq(size)
    radius2 = freq[:, None] ** 2 + freq[None, :] ** 2
    return np.exp(-2.0 * np.pi**2 * sigma**2 * radius2)


def smooth_field(rng, size, scale):
    """Zero-mean, unit-variance periodic Gaussian random field with correlation length `scale` pixels."""
    field = np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) * gaussian_transfer(size, scale)).real
    field -= field.mean()
    return field / (field.std() + 1e-12)


def shift(array, dy, dx):
    """`array` moved by (dy, dx) pixels with zero fill: result[y, x] = array[y - dy, x - dx]."""
    result = np.zeros_like(array)
    height, width = array.shape
    result[max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] = \
        array[max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0)]
    return result


def road_mask(rng, size, count, width):
    """Mask of `count` gently curving roads of `width` pixels crossing the scene, every second one roughly vertical."""
    y, x = np.mgrid[0:size, 0:size].astype(float) - size / 2
    mask = np.zeros((size, size), bool)
    per_direction = (count + 1) // 2
    for index in range(count):
        angle = rng.uniform(-0.3, 0.3) + (np.pi / 2 if index % 2 else 0.0)
        along = x * np.cos(angle) + y * np.sin(angle)
        across = -x * np.sin(angle) + y * np.cos(angle)
        if count <= 2:
            offset = rng.uniform(-0.35, 0.35) * size
        else:  # a network: evenly spaced, jittered
            offset = ((index // 2 + 0.5 + rng.uniform(-0.2, 0.2)) / per_direction - 0.5) * size
        wiggle = rng.uniform(0.0, size / 14) * np.sin(2 * np.pi * along / rng.uniform(size / 2, 2 * size)
                                                      + rng.uniform(0.0, 2 * np.pi))
        mask |= np.abs(across - offset - wiggle) < width / 2
    return mask


def farmland_layers(rng, size):
    """Crop type and row pattern of a tilted grid of rectangular parcels covering the whole scene."""
    y, x = np.mgrid[0:size, 0:size].astype(float)
    tilt = rng.uniform(-0.3, 0.3)
    u = x * np.cos(tilt) + y * np.sin(tilt)
    v = -x * np.sin(tilt) + y * np.cos(tilt)
    iu = np.floor(u / rng.uniform(size / 5, size / 2.5) + rng.uniform()).astype(int)
    iv = np.floor(v / rng.uniform(size / 5, size / 2.5) + rng.uniform()).astype(int)
    iu -= iu.min()
    iv -= iv.min()
    shape = (iu.max() + 1, iv.max() + 1)
    crop = rng.integers(0, len(CROP_COLOURS), shape)[iu, iv]
    along_u = rng.random(shape)[iu, iv] < 0.5
    period = rng.choice([3.0, 4.0, 5.0], shape)[iu, iv]
    rows = np.cos(2 * np.pi * np.where(along_u, v, u) / period)
    return crop, rows


def building_layers(rng, size, urban):
    """Building heights (pixels) and roof tones of a block grid with streets, inside the `urban` mask."""
    pitch = max(6, size // 8)
    street = max(2, pitch // 5)
    y, x = np.mgrid[0:size, 0:size]
    y, x = y + rng.integers(0, pitch), x + rng.integers(0, pitch)
    by, bx = y // pitch, x // pitch
    shape = (by.max() + 1, bx.max() + 1)
    present = rng.random(shape) < 0.85
    heights = rng.uniform(2.0, max(3.0, 0.6 * pitch), shape)
    tones = rng.uniform(0.0, 1.0, shape)
    inset_y, inset_x = (rng.integers(0, pitch // 4 + 1, shape) for _ in range(2))
    roof = (urban & present[by, bx] & (y % pitch >= street) & (x % pitch >= street)
            & (y % pitch < pitch - inset_y[by, bx]) & (x % pitch < pitch - inset_x[by, bx]))
    return np.where(roof, heights[by, bx], 0.0), np.where(roof, tones[by, bx], 0.0)


def land_cover_map(rng, size, dominant):
    """A random land-cover scene of `size` x `size` pixels whose most frequent class is `dominant`."""
    target = CATEGORIES.index(dominant)
    for attempt in range(20):
        scales = {BUILDING: size / 8, FARMLAND: size / 5, VEGETATION: size / 6, WATER: size / 4}
        bias = {BUILDING: -0.2, FARMLAND: 0.0, VEGETATION: 0.0, WATER: -0.3}
        if dominant != "road":
            bias[target] += 1.0 + 0.5 * attempt
        classes = list(scales)
        affinity = np.stack([smooth_field(rng, size, scales[c]) + bias[c] for c in classes])
        labels = np.asarray(classes, np.uint8)[affinity.argmax(0)]
        if dominant == "road":  # a transport hub: a dense grid of wide roads
            roads = road_mask(rng, size, 6 + 2 * attempt, max(2.0, size / 10))
        else:
            roads = road_mask(rng, size, int(rng.integers(1, 3)), max(1.5, size / 40))
        labels[roads & (labels != WATER)] = ROAD  # no roads across water (bridges are rare)
        if np.bincount(labels.ravel(), minlength=len(CATEGORIES)).argmax() == target:
            break
    else:
        raise SargenError(f"could not build a {dominant}-dominated scene of size {size}")
    crop, rows = farmland_layers(rng, size)
    farmland = labels == FARMLAND
    height, tone = building_layers(rng, size, labels == BUILDING)
    terrain = smooth_field(rng, size, size / 4) * 0.08 * size
    return Scene(labels=labels, texture=smooth_field(rng, size, 1.2), terrain=terrain,
                 crop=np.where(farmland, crop, -1), rows=np.where(farmland, rows, 0.0),
                 building_height=height, roof_tone=tone, dominant=dominant)


def uniform_scene(size, category):
    """A homogeneous scene of one class, without texture, terrain, parcels or buildings (for tests and calibration)."""
    zeros = np.zeros((size, size))
    labels = np.full((size, size), CATEGORIES.index(category), np.uint8)
    crop = np.where(labels == FARMLAND, 0, -1)
    return Scene(labels, zeros, zeros, crop, zeros, zeros, zeros, category)


# ---------------------------------------------------------------- SAR


def cast_along(height, step_y, step_x, reach, max_steps):
    """Pixels within `reach` x height of a taller pixel along direction (step_y, step_x), excluding the tall ones."""
    covered = np.zeros(height.shape, bool)
    for step in range(1, max_steps + 1):
        covered |= shift(height, step * step_y, step * step_x) * reach >= step * np.hypot(step_y, step_x)
    return covered & (height <= 0)


def backscatter(scene, band):
    """Mean sigma0 (linear) of HH, HV, VV (3xHxW) and the HH-VV correlation (HxW) of a scene in a band."""
    band = BANDS[band] if isinstance(band, str) else band
    labels = scene.labels
    db = SIGMA0_DB[band.name][labels].transpose(2, 0, 1).copy()
    rho = HHVV_CORRELATION[band.name][labels].copy()
    farmland = labels == FARMLAND
    db[:, farmland] += CROP_OFFSETS_DB[scene.crop[farmland]].T + band.row_amplitude_db * scene.rows[farmland]
    db += np.where(labels == VEGETATION, 1.5, 0.5) * scene.texture
    slope = np.gradient(scene.terrain, axis=1)  # slopes facing the radar (rising to the right) look brighter
    db += np.where(labels == WATER, 0.0, SLOPE_GAIN_DB * slope)
    roof = scene.building_height > 0
    wall = roof & ~shift(roof, 0, 1)  # near-range face: wall-ground dihedral
    for mask, name in ((roof & ~wall, "roof"), (wall, "wall")):
        offsets, correlation = BUILDING_FEATURES_DB[name]
        db[:, mask] += offsets[:, None]
        rho[mask] = correlation
    incidence = np.radians(INCIDENCE_DEG)
    max_steps = int(np.ceil(scene.building_height.max() / np.tan(incidence))) if roof.any() else 0
    db += LAYOVER_DB * cast_along(scene.building_height, 0, -1, 1 / np.tan(incidence), max_steps)
    db += SHADOW_DB * cast_along(scene.building_height, 0, 1, np.tan(incidence), max_steps)
    sigma0 = 10.0 ** (db / 10.0) + 10.0 ** (band.noise_floor_db / 10.0)
    return sigma0, np.clip(rho, -0.95, 0.95)


def complex_speckle(rng, shape, looks, grain):
    """`looks` independent unit-power circular complex Gaussian fields of `shape`, correlated over `grain` pixels."""
    assert shape[-1] == shape[-2], "square images only"
    noise = rng.standard_normal((looks, *shape)) + 1j * rng.standard_normal((looks, *shape))
    transfer = gaussian_transfer(shape[-1], grain) if grain > 0 else np.ones(shape[-2:])
    filtered = np.fft.ifft2(np.fft.fft2(noise) * transfer)
    return filtered / np.sqrt(2.0 * np.mean(transfer**2))


def speckle(rng, shape, looks, grain):
    """Multiplicative intensity speckle: the mean of `looks` correlated single-look intensities, Gamma(L, 1/L)."""
    return np.mean(np.abs(complex_speckle(rng, shape, looks, grain)) ** 2, axis=0)


def simulate_sar(rng, scene, band):
    """Speckled multi-look intensities of a scene: dict of HH, HV, VV and Pauli (surface, double, volume) images."""
    band = BANDS[band] if isinstance(band, str) else band
    sigma0, rho = backscatter(scene, band)
    z = complex_speckle(rng, (3, *scene.labels.shape), band.looks, band.grain)  # looks x 3 x H x W
    hh = np.sqrt(sigma0[0]) * z[:, 0]
    vv = np.sqrt(sigma0[2]) * (rho * z[:, 0] + np.sqrt(1.0 - rho**2) * z[:, 1])
    hv = np.sqrt(sigma0[1]) * z[:, 2]

    def power(values):
        return np.mean(np.abs(values) ** 2, axis=0)

    return {"HH": power(hh), "HV": power(hv), "VV": power(vv), "surface": power(hh + vv) / 2,
            "double": power(hh - vv) / 2, "volume": 2 * power(hv)}


def db_to_uint8(intensity, window):
    """Map linear intensity to 8 bits through a fixed dB window (low..high dB -> 0..255, clipped)."""
    low, high = window
    db = 10.0 * np.log10(np.maximum(intensity, 1e-10))
    return np.round(np.clip((db - low) / (high - low), 0.0, 1.0) * 255.0).astype(np.uint8)


def pauli_rgb(sar):
    """Pauli RGB (R double bounce |HH-VV|^2, G volume |HV|^2, B surface |HH+VV|^2) with fixed dB windows."""
    channels = (sar["double"], sar["volume"], sar["surface"])
    return np.stack([db_to_uint8(c, w) for c, w in zip(channels, PAULI_WINDOWS_DB)], axis=-1)


def sar_gray(sar):
    """Grayscale SAR image: VV intensity in the -25..0 dB window."""
    return db_to_uint8(sar["VV"], SAR_GRAY_WINDOW_DB)


# ---------------------------------------------------------------- optical


def optical_rgb(rng, scene):
    """Synthetic optical RGB image (uint8 HxWx3): class colours and textures, sun shading, cast shadows, noise."""
    labels = scene.labels
    size = labels.shape[0]
    colour = np.zeros((*labels.shape, 3))
    tint = smooth_field(rng, size, size / 6)[..., None]
    texture = scene.texture[..., None]
    colour[labels == WATER] = (np.array([0.08, 0.17, 0.32]) * (1 + 0.08 * tint + 0.03 * texture))[labels == WATER]
    vegetation = np.array([0.16, 0.33, 0.13]) * (1 + 0.3 * texture) + np.array([0.03, 0.02, 0.0]) * tint
    colour[labels == VEGETATION] = vegetation[labels == VEGETATION]
    farmland = labels == FARMLAND
    colour[farmland] = CROP_COLOURS[scene.crop[farmland]] * (1 + 0.10 * scene.rows[farmland] +
                                                              0.04 * scene.texture[farmland])[:, None]
    colour[labels == ROAD] = (np.array([0.36, 0.36, 0.38]) * (1 + 0.04 * texture))[labels == ROAD]
    urban = labels == BUILDING
    colour[urban] = (np.array([0.33, 0.32, 0.31]) * (1 + 0.05 * texture))[urban]
    roof = scene.building_height > 0
    roof_grey = 0.45 + 0.3 * scene.roof_tone
    colour[roof] = np.stack([roof_grey, roof_grey, roof_grey * 1.03], -1)[roof]
    # sun shading of the terrain (Lambert), water is flat
    gy, gx = np.gradient(scene.terrain)
    azimuth, elevation = np.radians(SUN_AZIMUTH_DEG), np.radians(SUN_ELEVATION_DEG)
    sun = np.array([np.sin(azimuth) * np.cos(elevation), -np.cos(azimuth) * np.cos(elevation), np.sin(elevation)])
    shade = (-gx * sun[0] - gy * sun[1] + sun[2]) / np.sqrt(gx**2 + gy**2 + 1) / sun[2]
    shade = np.where(labels == WATER, 1.0, np.clip(shade, 0.3, 1.5))
    # building shadows cast away from the sun (towards the lower right)
    max_steps = int(np.ceil(scene.building_height.max() / np.tan(elevation))) if roof.any() else 0
    shadow = cast_along(scene.building_height, 1, 1, 1 / np.tan(elevation), max_steps)
    shade = shade * np.where(shadow, 0.45, 1.0)
    image = colour * shade[..., None] + rng.normal(0.0, 0.008, colour.shape)
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


# ---------------------------------------------------------------- the sen12ms tree (Sentinel-1/2 GeoTIFF patches)

# Sentinel-2 L1C bands of SEN12MS: B1 B2 B3 B4 B5 B6 B7 B8 B8A B9 B10 B11 B12 (443 ... 2190 nm); bands 4,3,2 = RGB.
S2_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
S2_REFLECTANCE = np.array([  # typical top-of-atmosphere reflectance per class (CATEGORIES order) and band
    [0.12, 0.13, 0.14, 0.15, 0.16, 0.17, 0.18, 0.19, 0.19, 0.10, 0.005, 0.22, 0.20],  # building
    [0.08, 0.07, 0.10, 0.11, 0.15, 0.22, 0.26, 0.28, 0.29, 0.14, 0.005, 0.26, 0.18],  # farmland
    [0.11, 0.11, 0.12, 0.13, 0.14, 0.15, 0.16, 0.17, 0.17, 0.09, 0.004, 0.20, 0.18],  # road
    [0.07, 0.04, 0.07, 0.04, 0.10, 0.25, 0.32, 0.35, 0.36, 0.17, 0.004, 0.18, 0.09],  # vegetation
    [0.09, 0.07, 0.05, 0.03, 0.02, 0.015, 0.012, 0.01, 0.008, 0.004, 0.001, 0.003, 0.002],  # water
])
SEN12MS_REGIONS = (("1158", "spring"), ("1868", "summer"), ("1970", "fall"), ("2017", "winter"))
SEN12MS_SEED_OFFSET = 600_000
UTM_ZONES = {"1158": 32633, "1868": 32632, "1970": 32631, "2017": 32630}  # EPSG codes of the regions' grids
PIXEL_METRES = 10.0


def s2_reflectance(rng, scene):
    """13-band Sentinel-2 reflectance x 10000 (int16, 13xHxW): class spectra shaded as the optical RGB render."""
    rgb = optical_rgb(rng, scene).astype(np.float64) / 255.0
    brightness = rgb.mean(axis=2)
    labels = scene.labels
    relative = np.ones_like(brightness)
    for category in np.unique(labels):  # each class's own shading and texture, around its mean brightness
        mask = labels == category
        relative[mask] = brightness[mask] / max(brightness[mask].mean(), 1e-6)
    reflectance = S2_REFLECTANCE[labels].transpose(2, 0, 1) * relative
    reflectance = reflectance + rng.normal(0.0, 0.002, reflectance.shape)
    return np.round(np.clip(reflectance, 0.0, 1.0) * 10000.0).astype(np.int16)


def s1_backscatter_db(rng, scene):
    """Sentinel-1 VV and VH (the model's HV) backscatter in dB (float32, 2xHxW), C band with speckle."""
    sar = simulate_sar(rng, scene, "C")
    return np.stack([10.0 * np.log10(np.maximum(sar[pol], 1e-10)) for pol in ("VV", "HV")]).astype(np.float32)


MAPPING_CLASSES = (VEGETATION, BUILDING, WATER)  # the known mapping's land covers
MAPPING_SHARPNESS = 3.0  # softmax gain of the abundance fields: mostly pure pixels, mixed at the edges


def known_mapping_pair(rng, size):
    """(Sentinel-2 int16 13xHxW, Sentinel-1 float32 dB 2xHxW) of one known-mapping scene (see the module docstring):
    S1 = 10 log10(abundances @ class sigma0 x speckle), S2 = abundances @ class reflectance."""
    fields = np.stack([smooth_field(rng, size, size / 6) for _ in MAPPING_CLASSES]) * MAPPING_SHARPNESS
    abundances = np.exp(fields - fields.max(axis=0))
    abundances /= abundances.sum(axis=0)
    reflectance = np.einsum("chw,cb->bhw", abundances, S2_REFLECTANCE[list(MAPPING_CLASSES)])
    reflectance = reflectance + rng.normal(0.0, 0.002, reflectance.shape)
    optical = np.round(np.clip(reflectance, 0.0, 1.0) * 10000.0).astype(np.int16)
    sigma0 = 10.0 ** (SIGMA0_DB["C"][list(MAPPING_CLASSES)][:, [2, 1]] / 10.0)  # VV, HV (Sentinel-1's VH)
    power = np.einsum("chw,cp->phw", abundances, sigma0) * speckle(rng, (2, size, size), BANDS["C"].looks, 0.0)
    return optical, (10.0 * np.log10(np.maximum(power, 1e-10))).astype(np.float32)


def write_geotiff_bands(path, bands, epsg, origin, descriptions):
    """Write a CxHxW array as a georeferenced Cloud-Optimized GeoTIFF (north-up, 10 m pixels), atomically."""
    count, height, width = bands.shape
    georeferencing = RasterInfo(None, bands.dtype.name, (height, width), count, CRS.from_epsg(epsg),
                                Affine(PIXEL_METRES, 0.0, origin[0], 0.0, -PIXEL_METRES, origin[1]))
    return write_raster(bands.transpose(1, 2, 0), path, georeferencing, descriptions=descriptions)


def sen12ms_patch_path(out, region, scene_number, sensor, patch):
    """ROIs<id>_<season>/<sensor>_<scene>/ROIs<id>_<season>_<sensor>_<scene>_p<patch>.tif under `out`."""
    roi, season = region
    prefix = f"ROIs{roi}_{season}"
    return out / prefix / f"{sensor}_{scene_number}" / f"{prefix}_{sensor}_{scene_number}_p{patch}.tif"


def make_sen12ms(out, size=64, n_scenes=8, seed=0, known_mapping=False):
    """Write a SEN12MS-layout tree: per scene, 3x3 half-overlapping patches of `size` px as S2 and S1 GeoTIFFs.

    Scene i lies in region SEN12MS_REGIONS[i % 4] with scene number i + 1; Sentinel-2 patches are int16
    reflectance x 10000 (13 bands), Sentinel-1 patches float32 VV and VH in dB, both of the same land cover
    (simulated, or with `known_mapping` Sentinel-1 a fixed function of Sentinel-2 plus speckle), on the region's
    UTM grid. Returns (files written, 0).
    """
    stride = size // 2
    scene_size = 2 * size
    written = 0
    for index in tqdm(range(n_scenes), desc="sen12ms", unit="scene"):
        rng = np.random.default_rng(seed + SEN12MS_SEED_OFFSET + index)
        region = SEN12MS_REGIONS[index % len(SEN12MS_REGIONS)]
        if known_mapping:
            optical, radar = known_mapping_pair(rng, scene_size)
        else:
            scene = land_cover_map(rng, scene_size, category_of(index))
            optical, radar = s2_reflectance(rng, scene), s1_backscatter_db(rng, scene)
        east, north = 300_000.0 + index * 10 * scene_size * PIXEL_METRES, 5_000_000.0
        for row in range(3):
            for column in range(3):
                patch = row * 3 + column + 1
                window = np.s_[:, row * stride:row * stride + size, column * stride:column * stride + size]
                origin = (east + column * stride * PIXEL_METRES, north - row * stride * PIXEL_METRES)
                for sensor, bands, names in (("s2", optical, S2_BANDS), ("s1", radar, ("VV", "VH"))):
                    write_geotiff_bands(sen12ms_patch_path(out, region, index + 1, sensor, patch), bands[window],
                                        UTM_ZONES[region[0]], origin, names)
                    written += 1
    return written, 0


# ---------------------------------------------------------------- scenes and data sets


def scene_rng(seed, dataset, folder, index):
    """The random generator of one scene: seeded with seed + the folder's offset + index."""
    return np.random.default_rng(seed + SEED_OFFSETS[(dataset, folder)] + index)


def category_of(index):
    """The dominant category of scene `index`: the categories in turn, so every 5 scenes hold each once."""
    return CATEGORIES[index % len(CATEGORIES)]


def render_x2ka(rng, size, dominant):
    """One x2ka pair: (X-band Pauli RGB, Ka-band Pauli RGB) uint8 images of the same scene."""
    scene = land_cover_map(rng, size, dominant)
    return tuple(pauli_rgb(simulate_sar(rng, scene, band)) for band in ("X", "Ka"))


def render_optical(rng, size, dominant):
    """One unpaired eo2sar A image: an optical RGB uint8 image of a new scene."""
    return optical_rgb(rng, land_cover_map(rng, size, dominant))


def render_sar(rng, size, dominant, band="X"):
    """One unpaired eo2sar B image: a grayscale VV SAR uint8 image of a new scene."""
    return sar_gray(simulate_sar(rng, land_cover_map(rng, size, dominant), band))


def render_eo2sar_pair(rng, size, dominant, band="X"):
    """One co-registered eo2sar pair: (optical RGB, grayscale VV SAR) uint8 images of the same new scene."""
    scene = land_cover_map(rng, size, dominant)
    return optical_rgb(rng, scene), sar_gray(simulate_sar(rng, scene, band))


def scene_name(number):
    """The file name of scene `number`: its dominant category and the number (``water_0004.png``)."""
    return f"{category_of(number)}_{number:04d}.png"


def remove_stale(folder, keep):
    """Delete the files an earlier run generated in `folder` (category_NNNN.png written by sargen) that are not in
    `keep`; return the count. Other files are never removed."""
    stale = [p for p in folder.glob("*.png") if NAME_PATTERN.match(p.name) and p.name not in keep
             and written_by_sargen(p)]
    for path in stale:
        path.unlink()
    return len(stale)


def planned_files(args, out):
    """Every file a run of `args` writes under `out`, before it writes any."""
    if args.dataset == "sen12ms":
        return [sen12ms_patch_path(out, SEN12MS_REGIONS[index % len(SEN12MS_REGIONS)], index + 1, sensor, patch)
                for index in range(args.n_scenes) for patch in range(1, 10) for sensor in ("s2", "s1")]
    if args.dataset == "x2ka":
        images = [out / split / side / scene_name(index) for split, count in (("train", args.n_train),
                                                                               ("test", args.n_test))
                  for index in range(count) for side in "AB"]
    else:
        images = [out / folder / scene_name(number)
                  for folder, numbers in eo2sar_scene_numbers(args.n_train, args.n_test).items() for number in numbers]
    return [*images, out / PAIRING_FILE]


def written_by_make_dataset(path):
    """Whether existing file `path` is one an earlier run wrote: an image with sargen's mark, or a pairing.json
    with the generator's record."""
    if path.name != PAIRING_FILE:
        return written_by_sargen(path)
    try:
        return "generator" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def check_outputs(args, out):
    """Refuse, before writing anything, a run that would replace a file an earlier run did not write (one line),
    unless --overwrite."""
    if out.exists() and not out.is_dir():
        raise SargenError(f"--out {out} is a file, not a folder")
    for path in planned_files(args, out):
        check_output(path, (), args.overwrite, written_by_make_dataset, "--out")


def make_x2ka(out, size=128, n_train=24, n_test=6, seed=0):
    """Write the paired X (A) / Ka (B) Pauli RGB set to out/{train,test}/{A,B}; return (files written, removed)."""
    jobs = [(split, index) for split, count in (("train", n_train), ("test", n_test)) for index in range(count)]
    written = removed = 0
    for split, index in tqdm(jobs, desc="x2ka", unit="scene"):
        name = scene_name(index)
        x_image, ka_image = render_x2ka(scene_rng(seed, "x2ka", split, index), size, category_of(index))
        write_image(x_image, out / split / "A" / name)
        write_image(ka_image, out / split / "B" / name)
        written += 2
    for split, count in (("train", n_train), ("test", n_test)):
        keep = {scene_name(i) for i in range(count)}
        removed += sum(remove_stale(out / split / side, keep) for side in "AB" if (out / split / side).is_dir())
    write_pairing(out, co_registered=[("train/A", "train/B"), ("test/A", "test/B")], unpaired=[],
                  generator={"dataset": "x2ka", "size": size, "n_train": n_train, "n_test": n_test, "seed": seed})
    return written + 1, removed


def eo2sar_scene_numbers(n_train, n_test):
    """{folder: scene numbers}: trainA and trainB hold different scenes, testA and testB the same ones."""
    test = range(2 * n_train, 2 * n_train + n_test)
    return {"trainA": range(n_train), "trainB": range(n_train, 2 * n_train), "testA": test, "testB": test}


def make_eo2sar(out, size=128, n_train=24, n_test=6, seed=0, band="X"):
    """Write unpaired optical (trainA) and SAR (trainB) images of different scenes, co-registered optical (testA)
    and SAR (testB) images of the same scenes, and out/pairing.json; see make_x2ka."""
    numbers = eo2sar_scene_numbers(n_train, n_test)
    jobs = [(folder, index) for folder in ("trainA", "trainB") for index in range(n_train)]
    jobs += [("test", index) for index in range(n_test)]
    written = removed = 0
    for folder, index in tqdm(jobs, desc="eo2sar", unit="scene"):
        rng = scene_rng(seed, "eo2sar", folder, index)
        if folder == "test":
            number = numbers["testA"][index]
            images = dict(zip(("testA", "testB"), render_eo2sar_pair(rng, size, category_of(number), band)))
        else:
            number = numbers[folder][index]
            image = (render_optical(rng, size, category_of(number)) if folder == "trainA"
                     else render_sar(rng, size, category_of(number), band))
            images = {folder: image}
        for image_folder, image in images.items():
            write_image(image, out / image_folder / scene_name(number))
            written += 1
    for folder, scene_numbers in numbers.items():
        if (out / folder).is_dir():
            removed += remove_stale(out / folder, {scene_name(number) for number in scene_numbers})
    write_pairing(out, co_registered=[("testA", "testB")], unpaired=[("trainA", "trainB")],
                  generator={"dataset": "eo2sar", "size": size, "n_train": n_train, "n_test": n_test, "seed": seed,
                             "band": band})
    return written + 1, removed


def build_parser():
    """The command-line parser: subcommands x2ka, eo2sar and sen12ms with their options."""
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="dataset", required=True)
    helps = {"x2ka": "paired X-band (A) / Ka-band (B) Pauli RGB PolSAR images, out/{train,test}/{A,B}",
             "eo2sar": "optical RGB (A) and grayscale SAR (B) images, out/{train,test}{A,B}: unpaired for "
                       "training, co-registered for testing"}
    for dataset, text in helps.items():
        sub = commands.add_parser(dataset, help=text, description=text)
        sub.add_argument("--out", type=Path, default=REPO_ROOT / "datasets" / dataset,
                         help=f"output folder (default: datasets/{dataset} in the repository)")
        sub.add_argument("--overwrite", action="store_true",
                         help="replace files in the output folder that an earlier run did not write")
        sub.add_argument("--size", type=integer(16, MAX_NETWORK_SIDE), default=128,
                         help=f"image size in pixels (16 to {MAX_NETWORK_SIDE})")
        sub.add_argument("--n_train", type=integer(0, MAX_SCENES), default=DEFAULTS[dataset]["n_train"],
                         help="training scenes (per domain for eo2sar); >= 5 to hold every category")
        sub.add_argument("--n_test", type=integer(0, MAX_SCENES), default=DEFAULTS[dataset]["n_test"],
                         help="test scenes (for eo2sar: each in testA and testB)")
        sub.add_argument("--seed", type=seed, default=0, help="base random seed")
        if dataset == "eo2sar":
            sub.add_argument("--band", choices=tuple(BANDS), default="X", help="radar band of the SAR images")
    text = ("a miniature SEN12MS tree: ROIs<id>_<season>/{s1,s2}_<scene>/..._p<patch>.tif, Sentinel-2 int16 "
            "reflectance (13 bands) and Sentinel-1 float32 VV/VH dB GeoTIFFs of the same scenes")
    sub = commands.add_parser("sen12ms", help=text, description=text)
    sub.add_argument("--out", type=Path, default=REPO_ROOT / "datasets" / "sen12ms",
                     help="output folder (default: datasets/sen12ms in the repository)")
    sub.add_argument("--overwrite", action="store_true",
                     help="replace files in the output folder that an earlier run did not write")
    sub.add_argument("--size", type=integer(16, MAX_NETWORK_SIDE), default=64,
                     help=f"patch size in pixels (16 to {MAX_NETWORK_SIDE})")
    sub.add_argument("--n_scenes", type=integer(2, MAX_SCENES), default=8,
                     help="scenes (9 half-overlapping patches each); >= 2 for a split by scene")
    sub.add_argument("--seed", type=seed, default=0, help="base random seed")
    sub.add_argument("--known_mapping", action="store_true",
                     help="Sentinel-1 a fixed function of Sentinel-2 plus speckle (vegetation/urban/water mixtures), "
                          "for learning checks of paired models")
    return parser


def main(argv=None):
    """Command-line entry: generate the chosen data set and print one summary line; returns 0 (errors raise:
    SargenError, or an OSError that util.cli.run_main words)."""
    args = build_parser().parse_args(argv)
    out = args.out.expanduser().resolve()
    start = time.perf_counter()
    check_outputs(args, out)
    if args.dataset == "sen12ms":
        written, removed = make_sen12ms(out, args.size, args.n_scenes, args.seed, args.known_mapping)
        what = (f"{args.n_scenes} scenes x 9 patches, Sentinel-2 and Sentinel-1 GeoTIFFs"
                f"{', Sentinel-1 a known function of Sentinel-2' if args.known_mapping else ''}")
    elif args.dataset == "x2ka":
        written, removed = make_x2ka(out, args.size, args.n_train, args.n_test, args.seed)
        what = f"{args.n_train} train + {args.n_test} test X/Ka Pauli RGB pairs"
    else:
        written, removed = make_eo2sar(out, args.size, args.n_train, args.n_test, args.seed, args.band)
        what = (f"{args.n_train}+{args.n_train} unpaired train, {args.n_test} co-registered test "
                f"optical/SAR-{args.band} images")
    stale = f", removed {removed} stale files" if removed else ""
    print(f"{args.dataset}: wrote {written} files ({what}, {args.size}x{args.size}) to {out}{stale} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    run_main(main)
