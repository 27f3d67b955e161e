"""`exolam report`: DIR/report.md with every figure and the table of paper claims.

Every number in the report is computed from the run folders' summary.json files by the
experiment modules' `claims()`; nothing is typed in by hand.
"""

from __future__ import annotations

from pathlib import Path

from exolam.errors import ConfigError
from exolam.experiments.registry import available
from exolam.runio import RunDir, atomic_write

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


def build_report(out: str | Path) -> tuple[str, int]:
    """Markdown text of the report and the number of experiments it covers."""
    out = Path(out)
    sections, table = [], []
    for name, mod in available().items():
        run = RunDir(out, name)
        if not run.summary_json.exists():
            continue
        summary, config = run.summary(), run.config()
        try:
            rows = mod.claims(summary)
        except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError) as e:  # valid JSON, wrong content
            raise ConfigError(f"{run.summary_json}: not a summary of {name} ({type(e).__name__}: {e}); rerun the "
                              f"`exolam reproduce {name}` command that wrote it (it rewrites summary.json "
                              "from results.csv)") from None
        for r in rows:
            table.append(f"| {r['claim']} | {r['paper']} | {r['ours']} | **{r['holds']}** | {name} |")
        doc = (mod.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        sections.append(f"## {name}\n\n{doc}\n\nRun: `{_preset(config)}`; files in `{name}/`.\n\n"
                        f"![{name}]({name}/{name}.png)\n")
    if not sections:
        return "", 0
    text = HEADER + "\n## Claims\n\n| claim | paper | ours | holds | experiment |\n|---|---|---|---|---|\n"
    text += "\n".join(table) + "\n\n" + "\n".join(sections)
    return text, len(sections)


def write_report(out: str | Path) -> Path:
    text, n = build_report(out)
    if n == 0:
        raise ConfigError(f"{out}: no experiment results found (run `exolam reproduce ...` first)")
    target = Path(out) / "report.md"
    atomic_write(target, text)
    return target
