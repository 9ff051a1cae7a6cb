"""Pick-a-Pic Parquet items: winners/losers follow label_0 (image 1 wins at label 0, with its reward), ties are kept
with label 0.5 and image 0 as winner only when asked, labelled data gives each decided side its own item."""
import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from conftest import MODEL, PARQUET
from seppoc_torch import load_family
from seppoc_torch.data import ParquetSource, decode_image

LABELS = [1.0, 0.0, 0.5, 1.0]
REWARDS = [(0.1, 0.2), (0.3, 0.4), (0.5, 0.6), (0.7, 0.8)]
WEIGHTS = [1.0, 2.0, 3.0, 4.0]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    t = pq.read_table(PARQUET, columns=["caption", "jpg_0", "jpg_1"]).slice(0, 4)
    t = t.append_column("label_0", pa.array(LABELS, pa.float64()))
    t = t.append_column("reward_0", pa.array([r[0] for r in REWARDS], pa.float64()))
    t = t.append_column("reward_1", pa.array([r[1] for r in REWARDS], pa.float64()))
    t = t.append_column("weight", pa.array(WEIGHTS, pa.float64()))
    path = tmp_path_factory.mktemp("d") / "fields.parquet"
    pq.write_table(t, path, row_group_size=3)  # two row groups: rows are found across groups
    return str(path), t


def plan(data, ties="drop", kinds=("winner", "loser")):
    datums = {"weight": {"kind": "weight", "view": None, "images": None, "per_step": False}}
    for k in kinds:
        datums[f"reward_{k}"] = {"kind": "reward", "view": k, "images": k, "per_step": False}
    return {"data": data, "ties": ties, "fields": ["weight", "reward_0", "reward_1"], "datums": datums}


@pytest.fixture(scope="module")
def dit():
    return load_family(MODEL)


def test_pairs_with_ties_kept(data, dit):
    path, table = data
    src = ParquetSource(path, plan("pairs", ties="keep"), dit.resolution)
    assert len(src) == 4
    cond, images, fields = src.fetch([0, 1, 2, 3], ["winner", "loser"], dit)
    assert fields["label"].tolist() == [1.0, 1.0, 0.5, 1.0]
    assert fields["reward_winner"].tolist() == [0.1, 0.4, 0.5, 0.7]
    assert fields["reward_loser"].tolist() == [0.2, 0.3, 0.6, 0.8]
    assert fields["weight"].tolist() == WEIGHTS
    jpg = {c: table.column(c).to_pylist() for c in ("jpg_0", "jpg_1")}
    assert torch.equal(images["winner"][1], decode_image(jpg["jpg_1"][1], 16))  # row 1: image 1 won
    assert torch.equal(images["loser"][1], decode_image(jpg["jpg_0"][1], 16))
    assert torch.equal(images["winner"][3], decode_image(jpg["jpg_0"][3], 16))
    assert cond["tokens"].shape == (4, 16)


def test_ties_dropped_and_labelled(data, dit):
    path, _ = data
    assert len(ParquetSource(path, plan("pairs"), dit.resolution)) == 3
    assert len(ParquetSource(path, plan("winners", kinds=("winner",)), dit.resolution)) == 3
    src = ParquetSource(path, plan("labelled", kinds=("image",)), dit.resolution)
    assert len(src) == 6
    _, _, fields = src.fetch(list(range(6)), ["image"], dit)
    assert fields["label"].tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert fields["reward_image"].tolist() == [0.1, 0.2, 0.4, 0.3, 0.7, 0.8]


def test_decode_matches_the_rust_reader():
    """A 16x16 PNG decodes to u8 / 255 * 2 - 1 in float32 (src/data/image.rs); larger images are centre-cropped
    to a square and resized."""
    from PIL import Image
    rgb = np.random.default_rng(0).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    x = decode_image(buf.getvalue(), 16)
    expect = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0 * 2.0 - 1.0
    assert torch.equal(x, expect)
    wide = np.zeros((16, 48, 3), dtype=np.uint8)
    wide[:, 16:32] = rgb
    buf = io.BytesIO()
    Image.fromarray(wide).save(buf, format="PNG")
    assert torch.equal(decode_image(buf.getvalue(), 16), expect)
