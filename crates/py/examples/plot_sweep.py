# %% [markdown]
# # A sweep's curves from its Parquet output (notebook-style; docs/PYTHON.md "Sweeps and scores")
#
# Sweeps and `score` are run by the command line, which writes tidy tables into a run folder;
# this script (cells marked `# %%`, so it runs as a script or cell by cell in Jupyter / VS Code) reads
# `samples.parquet` with pandas (or polars) and plots accuracy against the compression ratio per mode,
# with the mean and a percentile band of the pages of each point.
#
#     cargo run --release -p compress-bench -- sweep --ratios 5..25 --engine tesseract \
#         --modes tiny,small,base --pages 5            # writes results/adhoc/<run_id>/
#     pip install pandas pyarrow matplotlib   # or polars instead of pandas + pyarrow
#     python crates/py/examples/plot_sweep.py results/adhoc/<run_id> --metric char_precision

# %%
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def load_samples(run: Path):
    """`samples.parquet` as a pandas DataFrame (through polars when pandas' Parquet reader is missing)."""
    path = run / "samples.parquet"
    if not path.is_file():
        raise SystemExit(f"{path} does not exist: pass a sweep's run folder (results/<experiment>/<run_id>)")
    try:
        import pandas as pd

        return pd.read_parquet(path)
    except ImportError:
        import polars as pl

        return pl.read_parquet(path).to_pandas()


# %%
def curves(samples, metric: str):
    """Mean and 10-90 % band of `metric` per (corpus, mode, target_ratio) over the pages read (`ok`)."""
    ok = samples[samples["status"] == "ok"]
    g = ok.groupby(["corpus", "mode", "target_ratio"])[metric]
    out = g.agg(["mean", "count"]).join(g.quantile(0.1).rename("p10")).join(g.quantile(0.9).rename("p90"))
    return out.reset_index().sort_values(["corpus", "mode", "target_ratio"])


# %%
def plot(table, metric: str, out: Path, baseline=None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = sorted(table["corpus"].unique())
    fig, axes = plt.subplots(1, len(corpora), figsize=(6 * len(corpora), 4), squeeze=False)
    for ax, corpus in zip(axes[0], corpora):
        for mode, rows in table[table["corpus"] == corpus].groupby("mode", sort=False):
            line, = ax.plot(rows["target_ratio"], rows["mean"], marker="o", label=mode)
            ax.fill_between(rows["target_ratio"], rows["p10"], rows["p90"], alpha=0.15, color=line.get_color())
        if baseline is not None:
            b = baseline[baseline["corpus"] == corpus].groupby("target_ratio")["value"].mean()
            ax.plot(b.index, b.values, "k--", lw=1, label="truncation baseline")
        ax.set(title=corpus, xlabel="compression ratio (text tokens / vision tokens)", ylabel=metric, ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    return out


# %%
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Plot a sweep's accuracy curves from samples.parquet")
    ap.add_argument("run", type=Path, help="a sweep's run folder")
    ap.add_argument("--metric", default="char_precision")
    ap.add_argument("--out", type=Path, default=None, help="PNG to write (default: RUN/curves_<metric>.png)")
    a = ap.parse_args(argv)
    samples = load_samples(a.run)
    table = curves(samples, a.metric)
    print(table.to_string(index=False))
    base_col = f"truncation_{a.metric}"
    baseline = None
    if base_col in samples.columns:
        baseline = samples[samples["status"] == "ok"][["corpus", "target_ratio", base_col]].rename(
            columns={base_col: "value"})
    out = plot(table, a.metric, a.out or a.run / f"curves_{a.metric}.png", baseline)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
