"""`exolam report`: DIR/report.md with every figure and the table of paper claims.

For every experiment folder under DIR that holds a run (config.json), the shards' rows are merged
into results.csv and summary.json and the figure are rebuilt from results.csv (`finish`), so
the report of a sharded sweep is exactly that of an unsharded one. A sweep with rows still missing
is reported as partial, with its row count. Every number in the report is computed from those
files by the experiment modules' `claims()`; nothing is typed in by hand.
"""

from __future__ import annotations

from pathlib import Path

from exolam.errors import ConfigError
from exolam.experiments.registry import available
from exolam.plotting import close
from exolam.runs.files import atomic_write, from_jsonable
from exolam.runs.rundir import RunDir

HEADER = """# exolam report

Reproduction of "Why Latent Actions Fail, and How to Prevent It". Each claim row compares the
paper's statement with the number our code measured in this folder's runs; `holds` is computed
from those numbers (yes / partly / no). Where we disagree with the paper, the row says so.
"""


def _preset(config: dict) -> str:
    train = config.get("train")
    steps = train.get("steps") if isinstance(train, dict) else None
    seeds = config.get("seeds")
    solver = config.get("solver", "sgd")
    return ", ".join(x for x in [f"seeds={seeds}" if seeds else "", f"steps={steps}" if steps else "",
                                  f"solver={solver}" if "solver" in config else ""] if x)


def finish(name: str, mod, cfg, run) -> dict | None:
    """summary.json and the figure from the run's results.csv (shards merged first); the summary, or
    None while no row is recorded (nothing to summarize or draw)."""
    rows = run.merge([tuple(k) for k in mod.plan(cfg)])
    if not rows:
        return None
    try:
        summary = mod.summarize_rows(cfg, rows)
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError) as e:  # parsed rows, wrong content
        raise ConfigError(f"{run.merged_csv}: its rows do not make a {name} summary ({type(e).__name__}: {e}); "
                          f"remove the damaged lines or rerun `exolam reproduce {name}`") from None
    summary["n_rows"], summary["n_planned"] = len(rows), len(mod.plan(cfg))
    run.write_summary(summary)
    summary = run.summary()
    fig = mod.plot(summary)
    run.save_figure(fig)
    close(fig)
    return summary


def build_report(out: str | Path) -> tuple[str, int]:
    """Markdown text of the report and the number of experiments it covers."""
    out = Path(out)
    sections, table, empty = [], [], []
    for name, mod in available().items():
        run = RunDir(out, name)
        if not run.config_json.exists() or not (run.merged_csv.exists() or run.shard_files()):
            continue
        config = run.config()
        try:
            cfg = from_jsonable(mod.Config, config)
        except TypeError as e:
            raise ConfigError(f"{run.config_json}: not a config of {name} ({e}); written by another version?") from None
        summary = finish(name, mod, cfg, run)
        if summary is None:  # results.csv holds its header only (a sweep killed before its first row)
            empty.append(f"## {name}\n\nNo rows recorded yet (0 of {len(mod.plan(cfg))}); rerun the `exolam reproduce "
                         f"{name}` command that started it.\n")
            continue
        try:
            rows = mod.claims(summary)
        except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError) as e:  # valid JSON, wrong content
            raise ConfigError(f"{run.summary_json}: not a summary of {name} ({type(e).__name__}: {e}); rerun "
                              f"`exolam report` (it rewrites summary.json from results.csv)") from None
        partial = summary["n_rows"] < summary["n_planned"]
        tag = f" (partial: {summary['n_rows']} of {summary['n_planned']} rows)" if partial else ""
        for r in rows:
            table.append(f"| {r['claim']} | {r['paper']} | {r['ours']} | **{r['holds']}**{tag} | {name} |")
        doc = (mod.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        sections.append(f"## {name}\n\n{doc}\n\nRun: `{_preset(config)}`{tag}; files in `{name}/`.\n\n"
                        f"![{name}]({name}/{name}.png)\n")
    if not sections:
        return "", 0
    text = HEADER + "\n## Claims\n\n| claim | paper | ours | holds | experiment |\n|---|---|---|---|---|\n"
    text += "\n".join(table) + "\n\n" + "\n".join(sections + empty)
    return text, len(sections)


def write_report(out: str | Path) -> Path:
    text, n = build_report(out)
    if n == 0:
        raise ConfigError(f"{out}: no experiment results found (run `exolam reproduce ...` first)")
    target = Path(out) / "report.md"
    atomic_write(target, text)
    return target
