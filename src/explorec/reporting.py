"""Human-readable summaries (plain text and Markdown) of what a command did."""

from __future__ import annotations

from typing import Any


def preprocess_text(summary: dict[str, Any]) -> str:
    """Return the few lines the `preprocess` command prints for a person."""
    counts = summary["counts"]
    status = "cache hit (nothing recomputed)" if summary["cache_hit"] else "computed"
    if summary.get("orchestrated") is False:
        status = "up to date: cache hit, no flow run needed (--force-flow runs it through Prefect)"
    title = f"explorec preprocess: {summary['dataset']} / {summary['split']}"
    lines = [
        f"{title} - {status} in {summary['elapsed_s']:.2f}s",
        f"  interactions {counts['interactions']:,}  users {counts['users']:,}  items {counts['items']:,}"
        f"  (with overview {counts['items_with_overview']:,}; cold {counts['cold_items']:,})",
        f"  train {counts['train']:,}  valid {counts['valid']:,}  test {counts['test']:,}",
        f"  output {summary['output_dir']}",
        f"  fingerprint {summary['fingerprint']}",
    ]
    return "\n".join(lines)


def preprocess_markdown(summary: dict[str, Any]) -> str:
    """Return the Markdown table published as the preprocess flow's Prefect artifact."""
    counts = summary["counts"]
    rows = "\n".join(f"| {name} | {value:,} |" for name, value in counts.items())
    return (
        f"# Preprocess: {summary['dataset']} / {summary['split']}\n\n"
        f"- cache hit: **{summary['cache_hit']}**\n- fingerprint: `{summary['fingerprint']}`\n"
        f"- output: `{summary['output_dir']}`\n- elapsed: {summary['elapsed_s']:.2f} s\n\n"
        f"| count | value |\n|---|---:|\n{rows}\n"
    )
