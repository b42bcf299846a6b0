"""Small hand-made interaction logs shared by the data and ingestion tests."""

from pathlib import Path

from tfrs_llmrec.config.loader import from_dict
from tfrs_llmrec.config.schema import DataConfig

# Three users; u1 rates `a` twice (the later row is a duplicate), u3 has only two interactions
# so leave-one-out keeps both in train. Items sort a..e -> 0..4, users u1..u3 -> 0..2.
THREE_USER_LOG = """user_id,item_id,timestamp,rating
u1,a,1,5
u2,b,5,4
u1,b,2,4
u1,c,3,3
u3,c,1,2
u1,d,4,2
u1,a,10,1
u2,a,6,4
u2,e,7,3
u3,a,2,1
"""

THREE_USER_ITEMS = """item_id,title,genres
a,"Alpha, the first",Drama|Comedy
b,Beta,
c,Gamma,Action
e,Epsilon,Drama
"""


def write_three_user_log(directory: Path) -> Path:
    (directory / "items.csv").write_text(THREE_USER_ITEMS, encoding="utf-8")
    path = directory / "log.csv"
    path.write_text(THREE_USER_LOG, encoding="utf-8")
    return path


def csv_config(path: Path, **overrides) -> DataConfig:
    """A csv DataConfig with ratings as labels, no k-core, history 2 and two shards."""
    raw = {"dataset": "csv", "path": str(path), "k_core": 0, "max_history": 2, "num_shards": 2,
           "columns": {"label": "rating"}}
    columns = overrides.pop("columns", {})
    raw.update(overrides)
    raw["columns"] = {**raw["columns"], **columns}
    return from_dict(DataConfig, raw)
