"""Raw-source adapters: each format's rows become canonical interactions and item texts."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.data import csv_config
from tfrs_llmrec.config.loader import ConfigError, from_dict
from tfrs_llmrec.config.schema import DataConfig
from tfrs_llmrec.data.adapters import RowProblem, adapter_for
from tfrs_llmrec.data.errors import DataError, find_data_error


def interactions(adapter):
    adapter.check(None)
    return [(line, result) for table in adapter.interaction_tables() for line, result in adapter.read_interactions(table)]


def items(adapter):
    return [result for table in adapter.item_tables() for _, result in adapter.read_items(table)]


def test_movielens_1m_double_colon_files_in_latin_1(tmp_path):
    (tmp_path / "ratings.dat").write_bytes(b"1::1193::5::978300760\n2::661::3::978302109\n")
    (tmp_path / "movies.dat").write_bytes("1193::Am\xe9lie (2001)::Comedy|Romance\n".encode("latin-1"))
    adapter = adapter_for(DataConfig(dataset="ml-1m", path=str(tmp_path)))
    assert interactions(adapter) == [(1, [("1", "1193", 978300760.0, 5.0)]), (2, [("2", "661", 978302109.0, 3.0)])]
    (item,) = items(adapter)
    assert (item.item_id, item.title, item.genres) == ("1193", "Amélie (2001)", ("Comedy", "Romance"))


def test_movielens_1m_without_a_path_says_how_to_download(tmp_path):
    with pytest.raises(DataError, match="tfrs_llmrec.data.download ml-1m"):
        adapter_for(DataConfig(dataset="ml-1m"))


def test_amazon_sequence_rows_expand_to_a_timeline(tmp_path):
    (tmp_path / "Games.valid.inter").write_text(
        "user_id:token\titem_id_list:token_seq\titem_id:token\n7\t3 1 2\t9\n8\t\t4\n")
    (tmp_path / "Games.item").write_text("item_id:token\ttitle:token_seq\n3\tZelda\n")
    adapter = adapter_for(DataConfig(dataset="amazon-games", path=str(tmp_path)))
    assert interactions(adapter) == [
        (2, [("7", "3", 0.0, 1.0), ("7", "1", 1.0, 1.0), ("7", "2", 2.0, 1.0), ("7", "9", 3.0, 1.0)]),
        (3, [("8", "4", 0.0, 1.0)])]
    assert [item.title for item in items(adapter)] == ["Zelda"]


def test_amazon_default_path_is_the_shared_copy():
    adapter = adapter_for(DataConfig(dataset="amazon-games"))
    assert [table.path.rsplit("/", 1)[-1] for table in adapter.interaction_tables() + adapter.item_tables()] == [
        "Games-6k.valid.inter", "Games-6k.item"]


def test_amazon_2018_json_lines(tmp_path):
    reviews = [{"reviewerID": "R1", "asin": "B01", "overall": 4.0, "unixReviewTime": 1500000000},
               {"reviewerID": "R2", "asin": "B02", "overall": 5.0}]
    with gzip.open(tmp_path / "Video_Games_5.json.gz", "wt") as handle:
        handle.write("\n".join(json.dumps(review) for review in reviews) + "\n")
    with gzip.open(tmp_path / "meta_Video_Games.json.gz", "wt") as handle:
        handle.write(json.dumps({"asin": "B01", "title": "Halo", "category": ["Video Games", "Xbox"],
                                 "description": ["Fight.", "Win."]}) + "\n")
    (tmp_path / "Video_Games_5.json.gz.sha256").write_text("ignored sidecar\n")
    adapter = adapter_for(DataConfig(dataset="amazon-2018", path=str(tmp_path)))
    assert interactions(adapter) == [(1, [("R1", "B01", 1500000000.0, 4.0)]),
                                     (2, RowProblem("missing_field", "missing field(s) unixReviewTime"))]
    (item,) = items(adapter)
    assert (item.title, item.genres, item.description) == ("Halo", ("Video Games", "Xbox"), "Fight. Win.")


def test_csv_quoting_iso_timestamps_and_bad_rows(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text('item,who,when\n"x,1",u,2020-01-01T00:00:00Z\ny,u,2020-01-01\nz,u\nw,,3\nv,u,1e9\n')
    config = csv_config(path, columns={"label": None, "user": "who", "item": "item", "timestamp": "when"})
    assert interactions(adapter_for(config)) == [
        (2, [("u", "x,1", 1577836800.0, 1.0)]), (3, [("u", "y", 1577836800.0, 1.0)]),
        (4, RowProblem("field_count", "expected 3 fields, got 2")),
        (5, RowProblem("empty_id", "empty user id")), (6, [("u", "v", 1e9, 1.0)])]


def test_parquet_with_a_column_mapping(tmp_path):
    table = pa.table({"uid": [10, 11], "iid": ["a", "b"], "ts": [5, 6], "stars": [4.5, None]})
    pq.write_table(table, tmp_path / "log.parquet")
    config = from_dict(DataConfig, {"dataset": "parquet", "path": str(tmp_path / "*.parquet"),
                                    "columns": {"user": "uid", "item": "iid", "timestamp": "ts", "label": "stars"}})
    assert interactions(adapter_for(config)) == [(1, [("10", "a", 5.0, 4.5)]),
                                                 (2, RowProblem("bad_label", "rating None is not a number"))]


def test_parquet_unknown_column_lists_the_schema(tmp_path):
    pq.write_table(pa.table({"uid": [1], "iid": [2], "ts": [3]}), tmp_path / "log.parquet")
    config = from_dict(DataConfig, {"dataset": "parquet", "path": str(tmp_path / "log.parquet")})
    with pytest.raises(DataError, match=r"log.parquet: unknown column 'user_id' .*available columns: uid, iid, ts"):
        adapter_for(config).check(None)


def test_missing_file_and_empty_glob_are_data_errors(tmp_path):
    with pytest.raises(DataError, match=f"^{tmp_path}/nope.csv: no such file$"):
        adapter_for(csv_config(tmp_path / "nope.csv")).interaction_tables()
    with pytest.raises(DataError, match="no files match"):
        adapter_for(csv_config(tmp_path / "*.csv")).interaction_tables()


def test_min_rating_without_a_rating_column_is_refused(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\nu,i,1\n")
    with pytest.raises(DataError, match="min_rating is set but this source has no rating column"):
        adapter_for(csv_config(path, columns={"label": None})).check(2.0)


def test_data_error_survives_beam_style_wrapping():
    original = DataError("/x/ratings.csv", "expected 4 fields, got 2", line=17)
    assert str(original) == "/x/ratings.csv:17: expected 4 fields, got 2"
    rebuilt = type(original)(original.args[0] + " [while running 'ReadInteractions']")
    assert str(find_data_error(rebuilt)) == "/x/ratings.csv:17: expected 4 fields, got 2"
    remote = RuntimeError("Traceback ...\ntfrs_llmrec.data.errors.DataError: /x/r.csv:3: bad [while running 'X']\n")
    assert str(find_data_error(remote)) == "/x/r.csv:3: bad"
    assert find_data_error(RuntimeError("other")) is None


def test_data_config_rejects_bad_values():
    with pytest.raises(ConfigError, match=r"bad_rows: expected one of 'error', 'skip'"):
        from_dict(DataConfig, {"bad_rows": "ignore"})
    with pytest.raises(ConfigError, match="columns.separator: must not be empty"):
        from_dict(DataConfig, {"columns": {"separator": ""}})
    with pytest.raises(ConfigError, match="split_ratios"):
        from_dict(DataConfig, {"split_ratios": [0.5, 0.5, 0.5]})
    config = from_dict(DataConfig, {"dataset": "ml-1m", "path": "/data/ml-1m", "min_rating": 4})
    assert config.min_rating == 4.0 and config.active_user_fraction == 0.2 and config.max_kcore_rounds == 10
