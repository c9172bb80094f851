"""metrics.json, metrics.csv and the metrics section of the results page, all written atomically."""

import csv
import io
import json
import math
import re
from pathlib import Path

from evaluation.evaluator import ratio
from evaluation.metrics import mean_and_std
from util.curves import charts_row, series_chart
from util.fileio import check_output, write_text_atomic
from util.html import HTMLSection, format_value
from util.versions import software_text, software_versions

TEXT_COLUMNS = ("name", "fake", "real", "resized")
CSV_HEADERS = ("kind,metric,", "metric,", ",".join(TEXT_COLUMNS))  # metrics.csv, metrics_sets.csv, older metrics.csv
BAND_KEY = re.compile(r"^(?P<metric>.+?)(?P<band>_band\d+)?$")  # per-band keys end in _bandN (the file's band)
PAIRED_METRICS = ("psnr", "ssim", "mae", "rmse", "lpips", "histogram_wasserstein_db_real", "histogram_js_real",
                  "texture_distance_real", "gram_distance_real")
KIND_ORDER = ("paired", "to the real set", "generated image", "real twin's statistic")
SET_DISTANCES = ("fid", "kid", "histogram_wasserstein_db", "histogram_js", "texture_distance", "gram_distance")
SUMMARY_COLUMNS = ("mean", "std", "count")
SET_COLUMNS = ("generated", "generated std", "real", "real std", "ratio")
PAGE_IMAGES = 12  # the page's paired table has a column per image up to this many images (metrics.csv: always)


def relative_path(path, folder):
    """`path` relative to `folder` when it is inside it, else as given (None stays None)."""
    if path is None:
        return None
    path = Path(path)
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return str(path)


def metric_columns(rows):
    """The numeric columns of the rows, in their order of first appearance."""
    return [key for key in dict.fromkeys(key for row in rows for key in row) if key not in TEXT_COLUMNS]


def build_report(out_dir, rows, domain, settings, computed=()):
    """The whole report: settings, which metrics were computed and why, one row per generated image, the summary
    (mean, std, count) of each per-image metric, the set-level (domain) metrics and the software versions."""
    rows = [{**row, "fake": relative_path(row["fake"], out_dir), "real": relative_path(row["real"], out_dir)}
            for row in rows]
    summary = {column: mean_and_std([row.get(column) for row in rows]) for column in metric_columns(rows)}
    return {"settings": settings, "computed": list(computed), "images": rows, "summary": summary, "domain": domain,
            "software": software_versions()}


def json_ready(value):
    """`value` with non-finite floats as the strings 'inf', '-inf' and 'nan' (strict JSON has no such numbers)."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def split_band(key):
    """(metric, band) of a report key: 'enl_band2' -> ('enl', 'band2'); 'psnr' -> ('psnr', '')."""
    match = BAND_KEY.match(key)
    return match.group("metric"), (match.group("band") or "_")[1:]


def by_metric(keys):
    """{metric: {band: key}} of report keys, in their order of first appearance ('' is all bands or the only one)."""
    grouped = {}
    for key in keys:
        metric, band = split_band(key)
        grouped.setdefault(metric, {})[band] = key
    return grouped


def bands_of(grouped):
    """The bands that occur in {metric: {band: key}}: '' first, then the file's bands in order."""
    bands = dict.fromkeys(band for keys in grouped.values() for band in keys)
    return sorted(bands, key=lambda band: (band != "", int(band[4:]) if band[4:].isdigit() else 0, band))


def band_heading(name, band):
    """A column heading: 'mean' for all bands (or the only one), 'mean band2' for one band."""
    return f"{name} {band}".strip()


def metric_kind(metric):
    """What a per-image metric compares: the real twin (paired), the real set, or the generated image alone."""
    if metric in PAIRED_METRICS:
        return "paired"
    if metric.endswith("_domain"):
        return "to the real set"
    if metric.endswith("_real"):
        return "real twin's statistic"
    return "generated image"


def per_image_table(report, kinds=None, image_columns=True):
    """(header, rows) of the per-image metrics: a row per metric, its mean, std and count per band, then its value
    in each image (a column per image and band); `kinds` picks metric kinds (metric_kind)."""
    grouped = {metric: keys for metric, keys in by_metric(report["summary"]).items()
               if kinds is None or metric_kind(metric) in kinds}
    grouped = dict(sorted(grouped.items(), key=lambda item: KIND_ORDER.index(metric_kind(item[0]))))
    bands = bands_of(grouped)
    names = [row["name"] for row in report["images"]] if image_columns else []
    header = ["kind", "metric", *[band_heading(name, band) for band in bands for name in SUMMARY_COLUMNS],
              *[band_heading(name, band) for name in names for band in bands]]
    rows = []
    for metric, keys in grouped.items():
        summaries = [report["summary"].get(keys.get(band), {}) for band in bands]
        row = [metric_kind(metric), metric, *[summary.get(name) for summary in summaries for name in SUMMARY_COLUMNS]]
        row += [image.get(keys[band]) if band in keys else None for image in report["images"][:len(names)]
                for band in bands]
        rows.append(row)
    return header, rows


def paired_page_table(report):
    """(header, rows) of the page's paired metrics: a row per metric, mean and std (per band where there are
    several), then a column per image (up to PAGE_IMAGES) with its value, or its bands' values joined by ' / '."""
    grouped = {metric: keys for metric, keys in by_metric(report["summary"]).items() if metric in PAIRED_METRICS}
    bands = bands_of(grouped)
    images = report["images"] if len(report["images"]) <= PAGE_IMAGES else []
    header = ["metric", *[band_heading(name, band) for band in bands for name in ("mean", "std")],
              *[image["name"] for image in images]]
    rows = []
    for metric, keys in grouped.items():
        summaries = [report["summary"].get(keys.get(band), {}) for band in bands]
        row = [metric, *[display(summary.get(name)) for summary in summaries for name in ("mean", "std")]]
        for image in images:
            values = [image.get(keys[""])] if "" in keys else [image.get(keys[band]) for band in bands if band in keys]
            row.append(" / ".join(format_value(display(value)) for value in values))
        rows.append(row)
    return header, rows


def set_value(value):
    """A set-level distance as one value: FID/KID's 'value', or the reason it is missing."""
    return value.get("value") if isinstance(value, dict) else value


def set_rows(report, distances=True, statistics=True):
    """(header, rows) of the distribution metrics, a column group per band: the set distances (`value`) and each
    statistic of the generated set beside the real set's (mean, std) with their ratio (difference for mean_db)."""
    domain = report["domain"]
    distance_keys = by_metric(key for key in domain if split_band(key)[0] in SET_DISTANCES) if distances else {}
    statistic_keys = by_metric(key for key, value in domain.items()
                               if isinstance(value, dict) and "generated" in value) if statistics else {}
    bands = bands_of({**distance_keys, **statistic_keys})
    columns = ("value",) * bool(distance_keys) + SET_COLUMNS * bool(statistic_keys)
    header = ["metric", *[band_heading(name, band) for band in bands for name in columns]]
    rows = []
    for metric, keys in distance_keys.items():
        rows.append([metric, *[cell for band in bands for cell in
                               [set_value(domain[keys[band]]) if band in keys else None]
                               + [None] * (len(columns) - 1)]])
    for metric, keys in statistic_keys.items():
        cells = []
        for band in bands:
            summary = domain.get(keys.get(band), {})
            generated, real = summary.get("generated", {}), summary.get("real", {})
            compared = summary.get("difference", summary.get("ratio"))
            if compared is None and "mean" in generated and "mean" in real:
                compared = ratio(generated["mean"], real["mean"])
            cells += [None] * bool(distance_keys) + [generated.get("mean"), generated.get("std"), real.get("mean"),
                                                     real.get("std"), compared]
        rows.append([f"{metric} (ratio: difference in dB)" if metric == "mean_db" else metric, *cells])
    return header, rows


def csv_table(header, rows):
    """CSV text of a table (None as an empty cell)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["" if cell is None else cell for cell in row] for row in rows])
    return buffer.getvalue()


def csv_text(report):
    """metrics.csv: a row per per-image metric (kind, metric), its mean, std and count per band, then its value in
    each image (a column per image and band)."""
    return csv_table(*per_image_table(report))


def sets_csv_text(report):
    """metrics_sets.csv: the distribution metrics: set distances, and generated beside real per band with their
    ratio."""
    return csv_table(*set_rows(report))


def flatten(values, prefix=""):
    """Nested dict -> [(dotted key, value)]."""
    items = []
    for key, value in values.items():
        if isinstance(value, dict):
            items += flatten(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items


def metrics_section(report, plots=None):
    """The 'metrics' HTMLSection of the results page, laid out as a researcher reads it: the paired metrics (a row
    per metric: mean, std, per image), the distribution metrics (generated beside real, their ratio), small plots
    of the dB histograms and speckle statistics of both sets, then the settings."""
    section = HTMLSection("metrics")
    section.add_header("Metrics (evaluate.py)", level=2)
    section.add_links([("metrics.json", "metrics.json"), ("metrics.csv", "metrics.csv"),
                       ("metrics_sets.csv", "metrics_sets.csv")])
    for line in report["computed"]:
        section.add_text(line)
    header, rows = paired_page_table(report)
    if rows:
        section.add_header("Paired metrics: each generated image against its real twin")
        if len(report["images"]) > PAGE_IMAGES:
            section.add_text(f"{len(report['images'])} images: the value of each is in metrics.csv")
        section.add_table(header, rows)
    section.add_header("Distribution metrics: the generated set against the real set")
    for part in ({"statistics": False}, {"distances": False}):
        header, rows = set_rows(report, **part)
        if rows:
            section.add_table(header, [[display(cell) for cell in row] for row in rows])
    if plots:
        section.add_header("dB histograms and speckle statistics: generated against real")
        section.add_element(charts_row([series_chart(title, series, "dB" if title.startswith("dB") else "image",
                                                     last_value=False)
                                        for title, series in plots.items()]))
    header, rows = per_image_table(report, kinds=("to the real set", "generated image"), image_columns=False)
    if rows:
        section.add_header("Per-image statistics and distances to the real set: summary")
        section.add_table(header, [[display(cell) for cell in row] for row in rows])
    section.add_header("Settings")
    section.add_text(f"software: {software_text()}")
    section.add_table(["setting", "value"], [[key, display(value)] for key, value in flatten(report["settings"])])
    return section


def display(value):
    """A value as shown in a table cell: None as '-', lists joined."""
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return value


def report_paths(out_dir):
    """Where the report goes: OUT/metrics.json, OUT/metrics.csv and OUT/metrics_sets.csv."""
    return Path(out_dir) / "metrics.json", Path(out_dir) / "metrics.csv", Path(out_dir) / "metrics_sets.csv"


def check_report_paths(out_dir, overwrite=False):
    """Refuse (one line) to replace a metrics.json or metrics*.csv that evaluate.py did not write, unless
    --overwrite; checked before any image is scored."""
    for path in report_paths(out_dir):
        check_output(path, (), overwrite, written_by_evaluate, "--out")


def written_by_evaluate(path):
    """Whether existing `path` is a report of evaluate.py: metrics.json with its sections, a metrics*.csv with the
    header of its tables (or of the metrics.csv of earlier versions)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        if Path(path).suffix == ".csv":
            return text.startswith(CSV_HEADERS)
        record = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(record, dict) and {"settings", "computed", "images", "summary"} <= set(record)


def write_report(report, out_dir, plots=None):
    """Write metrics.json, metrics.csv and metrics_sets.csv, and the metrics section (with `plots`, the
    Evaluator's plot_series) into index.html where the folder has one."""
    out_dir = Path(out_dir)
    json_path, csv_path, sets_path = report_paths(out_dir)
    write_text_atomic(json_path, json.dumps(json_ready(report), indent=2, allow_nan=False) + "\n")
    write_text_atomic(csv_path, csv_text(report))
    write_text_atomic(sets_path, sets_csv_text(report))
    written = [json_path, csv_path, sets_path]
    page_path = out_dir / "index.html"
    if page_path.is_file():
        written.append(metrics_section(report, plots).save_into(page_path))
    return written
