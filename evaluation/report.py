"""metrics.json, metrics.csv and the metrics section of the results page, all written atomically."""

import csv
import io
import json
import math
from pathlib import Path

from evaluation.metrics import mean_and_std
from util.fileio import check_output, write_text_atomic
from util.html import HTMLSection
from util.versions import software_text, software_versions

TEXT_COLUMNS = ("name", "fake", "real", "resized")
SUMMARY_STATISTICS = ("mean", "std")


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


def csv_text(report):
    """One row per image, then one row per summary statistic (name 'summary:mean', 'summary:std')."""
    columns = [*TEXT_COLUMNS, *report["summary"]]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in report["images"]:
        writer.writerow({key: "" if row.get(key) is None else row[key] for key in columns})
    for statistic in SUMMARY_STATISTICS:
        writer.writerow({"name": f"summary:{statistic}",
                         **{key: values[statistic] for key, values in report["summary"].items()}})
    return buffer.getvalue()


def flatten(values, prefix=""):
    """Nested dict -> [(dotted key, value)]."""
    items = []
    for key, value in values.items():
        if isinstance(value, dict):
            items += flatten(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items


def metrics_section(report):
    """The 'metrics' HTMLSection of the results page: domain metrics, summary, settings and per-image tables."""
    section = HTMLSection("metrics")
    section.add_header("Metrics (evaluate.py)", level=2)
    section.add_links([("metrics.json", "metrics.json"), ("metrics.csv", "metrics.csv")])
    for line in report["computed"]:
        section.add_text(line)
    section.add_header("Generated set against the real target domain")
    section.add_table(["metric", "value"], [[key, display(value)] for key, value in flatten(report["domain"])])
    section.add_header("Per-image metrics: summary")
    section.add_table(["metric", "mean", "std", "count"],
                      [[key, values["mean"], values["std"], values["count"]]
                       for key, values in report["summary"].items()])
    section.add_header("Settings")
    section.add_text(f"software: {software_text()}")
    section.add_table(["setting", "value"], [[key, display(value)] for key, value in flatten(report["settings"])])
    section.add_header("Per-image metrics")
    columns = ["name", *report["summary"]]
    section.add_table(columns, [[display(row.get(key)) for key in columns] for row in report["images"]])
    return section


def display(value):
    """A value as shown in a table cell: None as '-', lists joined."""
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return value


def report_paths(out_dir):
    """Where the report goes: OUT/metrics.json and OUT/metrics.csv."""
    return Path(out_dir) / "metrics.json", Path(out_dir) / "metrics.csv"


def check_report_paths(out_dir, overwrite=False):
    """Refuse (one line) to replace a metrics.json or metrics.csv that evaluate.py did not write, unless
    --overwrite; checked before any image is scored."""
    for path in report_paths(out_dir):
        check_output(path, (), overwrite, written_by_evaluate, "--out")


def written_by_evaluate(path):
    """Whether existing `path` is a report of evaluate.py: metrics.json with its sections, or metrics.csv with its
    header."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        if Path(path).suffix == ".csv":
            return text.startswith(",".join(TEXT_COLUMNS))
        record = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(record, dict) and {"settings", "computed", "images", "summary"} <= set(record)


def write_report(report, out_dir):
    """Write metrics.json and metrics.csv, and the metrics section into index.html where the folder has one."""
    out_dir = Path(out_dir)
    json_path, csv_path = report_paths(out_dir)
    write_text_atomic(json_path, json.dumps(json_ready(report), indent=2, allow_nan=False) + "\n")
    write_text_atomic(csv_path, csv_text(report))
    written = [json_path, csv_path]
    page_path = out_dir / "index.html"
    if page_path.is_file():
        written.append(metrics_section(report).save_into(page_path))
    return written
