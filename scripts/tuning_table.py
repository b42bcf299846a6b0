"""Prints the README's tuning table from finished searches: python scripts/tuning_table.py runs/<name>-tune ...

One row per search: the config searched, the grid, how many trials ran, every trial's validation
value and the chosen values (all read from the search's trials.json and its trials' configs).
"""

import json
import sys
from pathlib import Path

import yaml


def row(search_dir: Path) -> str:
    search = json.loads((search_dir / "trials.json").read_text(encoding="utf-8"))
    trials, best = search["trials"], search["best"]
    config = yaml.safe_load((Path(trials[0]["run"]) / "config.yaml").read_text(encoding="utf-8"))
    space = "; ".join(f"{dimension['key']} ∈ {dimension['values']}" for dimension in config["tune"]["space"])
    values = ", ".join(f"{trial['value']:.4f}" for trial in trials)
    chosen = ", ".join(f"{key}={value}" for key, value in best["values"].items())
    return (f"| `{search_dir.name}` | {space} | {len(trials)} | {best['metric']}: {values} | {chosen} "
            f"(`{Path(search['best_config']).name}`) |")


def main(argv) -> int:
    print("| search | grid | trials | validation value per trial | chosen |")
    print("|---|---|---|---|---|")
    for search_dir in argv:
        print(row(Path(search_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
