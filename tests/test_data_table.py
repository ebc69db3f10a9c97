"""Reading users' tables: file lines as row labels, CSV/TSV/Parquet, --where and --holdout."""
import numpy as np
import pandas as pd
import pytest

from jaxscale.data import holdout_mask, read_table, where
from jaxscale.data import validate as V


def test_rows_are_named_by_their_line_in_the_file(tmp_path):
    p = tmp_path / "runs.csv"
    p.write_text("N,loss\n1e8,3.1\n2e8,nan\n4e8,2.9\n")
    df = read_table(p)
    assert df.index.tolist() == [2, 3, 4] and df.attrs["source"] == str(p)
    with pytest.raises(ValueError, match=r"'loss' has 1 non-finite value\(s\) .* at rows \[3\]"):
        V.check_finite(df, ["loss"], "runs.csv")


def test_every_column_with_missing_cells_is_named_at_once(tmp_path):
    # a user fixing one column at a time used to meet the next one only on the next run
    p = tmp_path / "runs.csv"
    p.write_text("N,tokens seen,loss\n1e8,,3.1\n2e8,4e9,nan\n,4e9,2.9\n,8e9,2.7\n8e8,1e10,2.5\n")
    df = read_table(p)
    with pytest.raises(ValueError) as err:
        V.check_finite(df, ["N", "tokens seen", "loss"], "runs.csv")
    msg = str(err.value)
    assert "'N' has 2 non-finite value(s) (2 NaN/missing) at rows [4, 5]" in msg
    assert "'tokens seen' has 1" in msg and "'loss' has 1" in msg
    fix = 'N.notna() and `tokens seen`.notna() and loss.notna()'
    assert f'--where "{fix}", which leaves out 4 of 5 rows' in msg
    assert len(where(df, fix)) == 1
    df.loc[6] = [1e9, np.inf, 2.4]  # an infinite value (notna() keeps it): a comparison leaves out both
    with pytest.raises(ValueError, match=r"1 infinite.*--where \"abs\(`tokens seen`\) < inf\", which leaves out "
                                         r"2 of 5 rows"):
        V.check_finite(df, ["tokens seen"], "runs.csv")
    assert len(where(df, "abs(`tokens seen`) < inf")) == 3


@pytest.mark.parametrize("suffix", [".tsv", ".parquet"])
def test_tsv_and_parquet(tmp_path, suffix):
    df = pd.DataFrame({"N": [1e8, 2e8], "loss": [3.0, 2.8]})
    p = tmp_path / f"runs{suffix}"
    if suffix == ".tsv":
        df.to_csv(p, sep="\t", index=False)
    else:
        df.to_parquet(p)
    got = read_table(p)
    assert got.index.tolist() == [2, 3] and got["loss"].tolist() == [3.0, 2.8]


@pytest.mark.parametrize("suffix, lines", [(".jsonl", [1, 2, 3]), (".ndjson", [1, 2, 3]), (".json", [2, 3, 4])])
def test_json_records(tmp_path, suffix, lines):
    """W&B-style rows (a metric logged on some rows only) as JSON lines or a JSON list of records:
    the columns and the empty cells as in the CSV; JSON lines are numbered by their line."""
    df = pd.DataFrame({"_step": [1, 1, 2], "train/loss": [3.0, None, 2.8], "_timestamp": [1.7e9, 1.7e9, 1.7e9 + 1]})
    p = tmp_path / f"history{suffix}"
    df.to_json(p, orient="records", lines=suffix != ".json")
    got = read_table(p)
    assert got.index.tolist() == lines and list(got.columns) == list(df.columns)
    assert got["train/loss"].isna().tolist() == [False, True, False] and got["_timestamp"].dtype.kind in "if"
    if suffix == ".json":  # pandas' default layout: one object per column
        df.to_json(p)
        assert read_table(p)["_step"].tolist() == [1, 1, 2]
    p.write_text("[]" if suffix == ".json" else "")
    with pytest.raises(ValueError, match="no records|is empty"):
        read_table(p)
    p.write_text('{"a": 1,')
    with pytest.raises(ValueError, match="could not parse"):
        read_table(p)


@pytest.mark.parametrize("body, message", [
    (None, "does not exist"),
    ("", "is empty"),
    ("N,loss\n", "has a header but no rows"),
])
def test_missing_empty_and_header_only_files(tmp_path, body, message):
    p = tmp_path / "runs.csv"
    if body is not None:
        p.write_text(body)
    with pytest.raises(ValueError, match=message):
        read_table(p)


def test_where_and_holdout_keep_file_lines_and_refuse_typos(tmp_path):
    p = tmp_path / "runs.csv"
    pd.DataFrame({"N": [1e8, 2e8, 4e8, 8e8], "my col": [1, 2, 3, 4]}).to_csv(p, index=False)
    df = read_table(p)
    sub = where(df, "N > 1.5e8")
    assert sub.index.tolist() == [3, 4, 5]
    assert where(df, None) is df
    assert holdout_mask(sub, "`my col` >= 4").tolist() == [False, False, True]
    assert not holdout_mask(sub, None).any()
    with pytest.raises(ValueError, match="keeps none of the 4 rows"):
        where(df, "N > 1e99")
    with pytest.raises(ValueError, match="not a valid pandas expression"):
        where(df, "Nn > 3")
    with pytest.raises(ValueError, match="selects none"):
        holdout_mask(df, "N < 0")
    with pytest.raises(ValueError, match="leaves 1 to fit; need at least 2"):
        holdout_mask(df, "N > 1e8", min_train=2)
    with pytest.raises(ValueError, match="one True/False per row"):
        holdout_mask(df, "N * 2")
    assert np.asarray(holdout_mask(df, "N == 1e8")).dtype == bool


@pytest.mark.parametrize("body, read_as", [
    ("N;loss\n1e8;3.1\n2e8;2.8\n", "separated by semicolons"),
    ("N;loss\n1e8;3,1\n2e8;2,8\n", "separated by semicolons with decimal commas (in 'loss')"),
    ("N\tloss\n1e8\t3.1\n2e8\t2.8\n", "separated by tabs"),
    ("N|loss\n1e8|3.1\n2e8|2.8\n", "separated by vertical bars"),
])
def test_other_separators_and_decimal_commas_are_read_and_said(tmp_path, body, read_as):
    """A spreadsheet saved with semicolons (and decimal commas, in locales that write them) reads as
    the same table; attrs["read_as"] (and a log line) say how it was read."""
    p = tmp_path / "runs.csv"
    p.write_text(body)
    got = read_table(p)
    assert got.columns.tolist() == ["N", "loss"] and got["loss"].tolist() == [3.1, 2.8]
    assert got.index.tolist() == [2, 3] and got.attrs["read_as"] == read_as


def test_decimal_commas_are_not_guessed_beside_decimal_points(tmp_path):
    """A column of decimal points means commas elsewhere are not decimals: that column stays text and
    the validators name it."""
    p = tmp_path / "runs.csv"
    p.write_text("N;loss;note\n1e8;3.1;1,5\n2e8;2.8;2,5\n")
    got = read_table(p)
    assert got["loss"].tolist() == [3.1, 2.8] and got["note"].tolist() == ["1,5", "2,5"]
    assert got.attrs["read_as"] == "separated by semicolons"
    p.write_text("N,loss\n1e8,3.1\n")  # the usual file: nothing to say
    assert "read_as" not in read_table(p).attrs


def test_a_query_missing_a_column_is_told_to_rename_it():
    """predict takes no column options: the fix for a query is renaming its columns."""
    df = pd.DataFrame({"N": [1e8], "D": [2e9]})
    with pytest.raises(ValueError, match=r"query: missing column\(s\) \['params'\]; present columns are \['N', 'D'\]\. "
                                         r"A fitted model reads the columns it was fitted with: rename"):
        V.require_columns(df, ["params"], "query")
    with pytest.raises(ValueError, match="Rename your columns or pass the right column names"):
        V.require_columns(df, ["params"], "runs.csv")


def test_the_index_pandas_writes_is_left_out_and_said(tmp_path):
    """``df.to_csv(path)`` (without ``index=False``) writes the index as a first column without a
    name; it is read back as ``Unnamed: 0``, which is no column of the user's table. A first unnamed
    column that holds anything else is kept."""
    from tests.helpers import log_lines

    df = pd.DataFrame({"params": [1e8, 2e8, 4e8], "loss": [3.1, 2.9, 2.7]})
    df.to_csv(tmp_path / "runs.csv")
    with log_lines("jaxscale") as said:
        got = read_table(tmp_path / "runs.csv")
    assert list(got.columns) == ["params", "loss"] and got.attrs["index_column_dropped"] == "Unnamed: 0"
    assert list(got.index) == [2, 3, 4] and got.attrs["source"].endswith("runs.csv")
    assert any("first column has no name and holds 0, 1, 2" in m for m in said), said
    df.set_index(pd.Index([7, 8, 9])).to_csv(tmp_path / "ids.csv")  # ids of the user's own: data
    assert list(read_table(tmp_path / "ids.csv").columns) == ["Unnamed: 0", "params", "loss"]


def test_numbers_with_thousands_separators_are_told_how_to_read_them():
    df = pd.DataFrame({"params": ["251,068,939", "1,000,000", "12,345.5"]}, index=[2, 3, 4])
    with pytest.raises(ValueError, match=r"'params' has 3 non-numeric value\(s\) at rows \[2, 3, 4\] .*without "
                                         r"thousands separators .*thousands=','"):
        V.check_numeric(df, ["params"], "runs")
    with pytest.raises(ValueError, match=r"not '1.2B'"):
        V.check_numeric(pd.DataFrame({"params": ["1.2B", "3,000"]}), ["params"], "runs")


def test_a_file_not_in_utf8_names_its_line_and_the_fix(tmp_path):
    """A spreadsheet saved in latin-1: the first byte that is not UTF-8 is named with its line in the
    file (not the reader's position in its buffer), with how to convert the file."""
    path = tmp_path / "runs.csv"
    rows = "".join(f"r{i},{i + 1}e8,{i + 1}e10,{3.0 - 0.01 * i}\n" for i in range(2000))
    path.write_bytes(("name,N,D,loss\n" + rows).encode() + "modèle,1e9,1e11,2.5\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"is not UTF-8 text: byte b'\\xe8' on line 2002 .* iconv -f latin1"):
        read_table(path)
