"""User mistakes end in one clear line naming the file (and row/column), before any training step."""
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import MODEL, PARQUET, dpo_plan, err_leaf, write_module
from seppoc_torch.cli import main


def fail(capsys, *args):
    with pytest.raises(SystemExit) as e:
        main(["train", *map(str, args), "--steps", "1", "--batch", "2", "--threads", "1"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def table():
    return pq.read_table(PARQUET).slice(0, 24)


def write(tmp_path, name, table):
    path = tmp_path / name
    pq.write_table(table, path)
    return str(path)


def test_not_parquet(tmp_path, capsys, dpo_module):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    err = fail(capsys, "--objective", dpo_module, "--model", MODEL, "--data", bad, "--out", tmp_path / "o")
    assert str(bad) in err and "not a readable Parquet file" in err
    assert not os.path.exists(tmp_path / "o")


def test_missing_column(tmp_path, capsys, dpo_module, table):
    path = write(tmp_path, "nojpg1.parquet", table.drop_columns(["jpg_1"]))
    err = fail(capsys, "--objective", dpo_module, "--model", MODEL, "--data", path)
    assert path in err and "no column `jpg_1`" in err


def test_bad_image_row(tmp_path, capsys, dpo_module, table):
    jpg = table.column("jpg_0").to_pylist()
    jpg[7] = b"not an image"
    path = write(tmp_path, "badimg.parquet", table.set_column(table.schema.get_field_index("jpg_0"), "jpg_0",
                                                              pa.array(jpg, pa.binary())))
    err = fail(capsys, "--objective", dpo_module, "--model", MODEL, "--data", path)
    assert f"{path}: row 7: `jpg_0` is not a decodable image" in err


def test_bad_label_row(tmp_path, capsys, dpo_module, table):
    labels = table.column("label_0").to_pylist()
    labels[5] = 0.3
    path = write(tmp_path, "badlabel.parquet", table.set_column(table.schema.get_field_index("label_0"), "label_0",
                                                                pa.array(labels, pa.float64())))
    err = fail(capsys, "--objective", dpo_module, "--model", MODEL, "--data", path)
    assert f"{path}: row 5: `label_0` is 0.3" in err


def test_not_a_model_folder(tmp_path, capsys, dpo_module):
    folder = tmp_path / "model"
    folder.mkdir()
    err = fail(capsys, "--objective", dpo_module, "--model", folder, "--data", PARQUET)
    assert str(folder) in err and "model_index.json is missing" in err


def test_objective_reads_a_column_the_data_lacks(tmp_path, capsys):
    plan = dpo_plan()
    plan["datums"] = {"weight": {"kind": "weight", "view": None, "images": None, "per_step": False}}
    plan["fields"] = ["weight"]
    mod = write_module(tmp_path / "weighted.py", "weighted", plan)
    err = fail(capsys, "--objective", mod, "--model", MODEL, "--data", PARQUET)
    assert PARQUET in err and "no column `weight`" in err


def test_pairs_objective_on_winners_only_export(tmp_path, capsys):
    from safetensors.torch import save_file
    import torch
    path = str(tmp_path / "data.safetensors")
    save_file({"winner": torch.zeros(4, 3, 16, 16), "tokens": torch.zeros(4, 16, dtype=torch.long)}, path)
    mod = write_module(tmp_path / "dpo.py", "dpo", dpo_plan())
    err = fail(capsys, "--objective", mod, "--model", MODEL, "--data", path)
    assert path in err and "has no losers" in err


def test_edited_module(tmp_path, capsys, dpo_module):
    text = open(dpo_module).read().replace("hand-written", "hand-edited", 1)
    edited = tmp_path / "edited.py"
    edited.write_text(text)
    err = fail(capsys, "--objective", edited, "--model", MODEL, "--data", PARQUET)
    assert str(edited) in err and "SOURCE_SHA256" in err


def test_missing_files(tmp_path, capsys, dpo_module):
    assert "no such file" in fail(capsys, "--objective", tmp_path / "nope.py", "--model", MODEL, "--data", PARQUET)
    assert "no such file" in fail(capsys, "--objective", dpo_module, "--model", tmp_path / "m.safetensors",
                                  "--data", PARQUET)
    assert "no file matches" in fail(capsys, "--objective", dpo_module, "--model", MODEL,
                                     "--data", tmp_path / "*.parquet")


def test_online_objectives_are_refused(tmp_path, capsys):
    """A sample's reward needs a reward model at training time and groups need K rows per prompt: neither exists
    here, so the trainer stops before any step, naming what the objective asks for."""
    sample = {"images": "sample0", "model": "ref", "sampler": "ddim", "steps": 2, "cfg": 1.0, "eta": 0.0}
    plan = dpo_plan(samples=[sample])
    plan["datums"] = {"reward_sample0": {"kind": "reward", "view": None, "images": "sample0", "per_step": False}}
    plan["online_rewards"] = ["reward_sample0"]
    mod = write_module(tmp_path / "online.py", "online", plan)
    err = fail(capsys, "--objective", mod, "--model", MODEL, "--data", PARQUET)
    assert "reward of generated images (reward_sample0)" in err and "has none" in err
    plan = dpo_plan(samples=[dict(sample, group=8)])
    plan["group"] = 8
    mod = write_module(tmp_path / "grouped.py", "grouped", plan)
    err = fail(capsys, "--objective", mod, "--model", MODEL, "--data", PARQUET)
    assert "8 images per prompt (`group = 8`)" in err and "one row per prompt" in err
