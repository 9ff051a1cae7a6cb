"""Training data: Pick-a-Pic Parquet (one file, a glob or a folder) or a `seppoc export-torch` safetensors file.

A source is an indexed list of training items; a step fetches only the rows this process trains on. Parquet is
indexed and checked up front from its small columns (caption, labels, rewards, weight) plus every image's header,
so a bad row is named (file, column, row) before the first step; image bytes are read per batch from their row
group and decoded, centre-cropped to a square and resized (bilinear) to the family's resolution, as seppoc's own
reader does (src/data/parquet/read.rs).

Items by PLAN data: "winners" = each decided comparison's winner; "pairs" = (winner, loser) of each decided
comparison, plus each tie with image 0 as winner and label 0.5 when PLAN ties = "keep"; "labelled" = one image per
decided comparison side, the winner with label 1 and the loser with label 0 (ties left out).
"""
import glob
import io
import json
import os
from collections import OrderedDict

import numpy as np
import torch

from .family import UserError

REQUIRED = ("caption", "jpg_0", "jpg_1", "label_0")
REWARD_COLUMNS = (("reward_0", "reward_1"), ("judge_0", "judge_1"))


def decode_image(raw: bytes, size: int) -> torch.Tensor:
    """Image bytes -> [3, size, size] float32 in [-1, 1]: RGB, centre-cropped to a square, resized with a
    bilinear (triangle) filter when its side differs."""
    from PIL import Image
    img = Image.open(io.BytesIO(raw)).convert("RGB")
    w, h = img.size
    if w == 0 or h == 0:
        raise ValueError("the image is empty")
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    if side != size:
        img = img.resize((size, size), Image.BILINEAR)
    a = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float()
    return a / 255.0 * 2.0 - 1.0


def image_bytes(v):
    """A cell of an image column: bytes, or Hugging Face's {bytes, path} struct."""
    if isinstance(v, dict):
        v = v.get("bytes")
    return v


class DataOrder:
    """Shuffled epochs drawn from the run's generator; the state (permutation, position, epoch) is checkpointed."""

    def __init__(self, n):
        self.n, self.perm, self.pos, self.epoch = n, [], 0, 0

    def take(self, k, gen):
        out = []
        while len(out) < k:
            if self.pos >= len(self.perm):
                self.perm = torch.randperm(self.n, generator=gen).tolist()
                self.pos = 0
                self.epoch += 1
            m = min(k - len(out), len(self.perm) - self.pos)
            out.extend(self.perm[self.pos:self.pos + m])
            self.pos += m
        return out

    def state_dict(self):
        return {"n": self.n, "perm": list(self.perm), "pos": self.pos, "epoch": self.epoch}

    def load_state_dict(self, d):
        if d["n"] != self.n:
            raise UserError(f"the checkpoint's data had {d['n']} items, this data has {self.n}")
        self.perm, self.pos, self.epoch = list(d["perm"]), d["pos"], d["epoch"]


class ExportSource:
    """`seppoc export-torch`'s data.safetensors: winner [N,3,S,S], optional loser, tokens [N,L] (DiT only)."""

    supports_labelled = False
    supports_ties = False

    def __init__(self, path, plan):
        from safetensors import safe_open
        from safetensors.torch import load_file
        try:
            with safe_open(path, framework="pt") as f:
                self.meta = f.metadata() or {}
            t = load_file(path)
        except Exception as e:
            raise UserError(f"{path}: not a readable safetensors file ({e})")
        if "winner" not in t or "tokens" not in t:
            raise UserError(f"{path}: not a `seppoc export-torch` data file (no winner/tokens tensors)")
        self.path, self.t = path, t
        self.has_pairs = "loser" in t
        self.alphas_cumprod = json.loads(self.meta["alphas_cumprod"]) if "alphas_cumprod" in self.meta else None

    def __len__(self):
        return self.t["winner"].shape[0]

    def describe(self):
        return f"{self.path} (seppoc export, {len(self)} items)"

    def field_problem(self, field):
        return f"{self.path} (a seppoc export) has no {field} values; use Pick-a-Pic Parquet data"

    def fetch(self, idx, kinds, family, cache=None):
        idx = torch.as_tensor(idx, dtype=torch.long)
        if "tokens" in family.null_cond(1):
            cond = {"tokens": self.t["tokens"][idx]}
        else:
            raise UserError(f"{self.path}: seppoc export data holds DiT tokens; the {family.name} family needs captions")
        images = {k: family.encode_images(self.t[k][idx]) for k in kinds}
        return cond, images, {}


class ParquetSource:
    """Pick-a-Pic Parquet files, indexed and checked up front (see the module docstring)."""

    supports_labelled = True
    supports_ties = True

    def __init__(self, spec, plan, resolution, log=print):
        self.spec, self.resolution = spec, resolution
        self.files = resolve_files(spec)
        mode, ties = plan["data"], plan["ties"]
        needs_reward = any(d["kind"] == "reward" for d in plan["datums"].values()) or \
            any(f.startswith("reward") for f in plan["fields"])
        needs_weight = any(d["kind"] == "weight" for d in plan["datums"].values()) or "weight" in plan["fields"]
        self.reward_cols = []
        # items: (file, row, image columns as indices 0/1 in (winner, loser) or (image,) order, caption, label,
        #         rewards of those images, weight)
        self.items = []
        self.pf, self.row_groups = [], []
        counts = {"rows": 0, "ties": 0, "unlabelled": 0}
        for fi, path in enumerate(self.files):
            self._index_file(fi, path, mode, ties, needs_reward, needs_weight, counts)
        self.has_pairs = True
        self._reward_missing = None
        if not self.items:
            raise UserError(f"{self.describe()}: no training items ({counts['rows']} rows, {counts['ties']} ties, "
                            f"{counts['unlabelled']} unlabelled)")
        self.counts = counts
        self._groups = [OrderedDict() for _ in self.files]

    # ------------------------------------------------------------ indexing and checks
    def _index_file(self, fi, path, mode, ties, needs_reward, needs_weight, counts):
        import pyarrow.parquet as pq
        try:
            pf = pq.ParquetFile(path)
        except Exception as e:
            raise UserError(f"{path}: not a readable Parquet file ({e})")
        names = set(pf.schema_arrow.names)
        for c in REQUIRED:
            if c not in names:
                raise UserError(f"{path}: no column `{c}` (a Pick-a-Pic file needs caption, jpg_0, jpg_1, label_0)")
        cols = ["caption", "label_0"] + [c for c in ("label_1", "has_label") if c in names]
        reward = None
        if needs_reward:
            reward = next((p for p in REWARD_COLUMNS if all(c in names for c in p)), None)
            if reward is None:
                raise UserError(f"{path}: no columns `reward_0` and `reward_1` (or `judge_0` and `judge_1`): the "
                                "objective reads `reward`")
            cols += list(reward)
        if needs_weight:
            if "weight" not in names:
                raise UserError(f"{path}: no column `weight`: the objective reads `weight`")
            cols.append("weight")
        try:
            table = pf.read(columns=cols)
        except Exception as e:
            raise UserError(f"{path}: not a readable Parquet file ({e})")
        col = {c: table.column(c).to_pylist() for c in cols}
        n = table.num_rows
        counts["rows"] += n

        def bad(row, column, what):
            return UserError(f"{path}: row {row}: `{column}` {what}")

        def number(row, column, ok=lambda v: True, what="a number"):
            v = col[column][row]
            if v is None:
                raise bad(row, column, "is null")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or not ok(v):
                raise bad(row, column, f"is {v!r}, not {what}")
            return float(v)

        for r in range(n):
            if "has_label" in col and col["has_label"][r] is False:
                counts["unlabelled"] += 1
                continue
            label = number(r, "label_0", lambda v: v in (0.0, 0.5, 1.0), "0, 0.5 or 1 (image 0 lost, tie, won)")
            if "label_1" in col and col["label_1"][r] is not None and float(col["label_1"][r]) != 1.0 - label:
                raise bad(r, "label_1", f"is {col['label_1'][r]}, not 1 - label_0 = {1.0 - label}")
            caption = col["caption"][r]
            if caption is None:
                raise bad(r, "caption", "is null")
            if not isinstance(caption, str):
                raise bad(r, "caption", f"is {type(caption).__name__}, not text")
            rw = [number(r, c, what="a finite reward") for c in reward] if reward else [None, None]
            weight = number(r, "weight", lambda v: v >= 0, "a finite weight >= 0") if needs_weight else None
            if label == 0.5:
                counts["ties"] += 1
                if mode == "pairs" and ties == "keep":
                    self.items.append((fi, r, (0, 1), caption, 0.5, (rw[0], rw[1]), weight))
                continue
            w = 0 if label == 1.0 else 1
            order = (w, 1 - w)
            if mode == "labelled":
                self.items.append((fi, r, (order[0],), caption, 1.0, (rw[order[0]],), weight))
                self.items.append((fi, r, (order[1],), caption, 0.0, (rw[order[1]],), weight))
            elif mode == "pairs":
                self.items.append((fi, r, order, caption, 1.0, (rw[order[0]], rw[order[1]]), weight))
            else:
                self.items.append((fi, r, (order[0],), caption, 1.0, (rw[order[0]],), weight))
        self._check_images(path, pf)
        self.pf.append(pf)
        starts, acc = [], 0
        for g in range(pf.num_row_groups):
            starts.append(acc)
            acc += pf.metadata.row_group(g).num_rows
        self.row_groups.append(starts)

    def _check_images(self, path, pf):
        """Every image cell is present and an image (its header decodes), before any training step."""
        from PIL import Image
        row = 0
        for batch in pf.iter_batches(batch_size=256, columns=["jpg_0", "jpg_1"]):
            for column in ("jpg_0", "jpg_1"):
                for i, v in enumerate(batch.column(column).to_pylist()):
                    raw = image_bytes(v)
                    if raw is None:
                        raise UserError(f"{path}: row {row + i}: `{column}` is null")
                    if not isinstance(raw, (bytes, bytearray)):
                        raise UserError(f"{path}: row {row + i}: `{column}` holds {type(raw).__name__}, "
                                        "not image bytes")
                    try:
                        with Image.open(io.BytesIO(raw)) as im:
                            w, h = im.size
                            if w == 0 or h == 0:
                                raise ValueError("the image is empty")
                    except Exception as e:
                        raise UserError(f"{path}: row {row + i}: `{column}` is not a decodable image ({e})")
            row += batch.num_rows

    # ------------------------------------------------------------ what the PLAN can read
    def __len__(self):
        return len(self.items)

    def describe(self):
        return self.spec if len(self.files) == 1 else f"{self.spec} ({len(self.files)} files)"

    def field_problem(self, field):
        return None  # every needed column was checked while indexing (the PLAN told the reader what it reads)

    # ------------------------------------------------------------ batches
    def _row(self, fi, row):
        """The two image cells of a row, reading (and keeping a couple of) row groups."""
        starts = self.row_groups[fi]
        g = max(k for k, s in enumerate(starts) if s <= row)
        cache = self._groups[fi]
        if g not in cache:
            cache[g] = self.pf[fi].read_row_group(g, columns=["jpg_0", "jpg_1"])
            while len(cache) > 2:
                cache.popitem(last=False)
        t = cache[g]
        return [image_bytes(t.column(c)[row - starts[g]].as_py()) for c in ("jpg_0", "jpg_1")]

    def fetch(self, idx, kinds, family, cache=None):
        """(cond, {kind: training-space images}, fields) for items `idx`; `cache` (a dict) keeps encoded images
        and prompt embeddings (--cache-latents)."""
        items = [self.items[i] for i in idx]
        captions = [it[3] for it in items]
        cond = encode_prompts_cached(family, captions, cache)
        images = {}
        for k, kind in enumerate(kinds):
            out = [None] * len(items)
            todo = []
            for j, it in enumerate(items):
                key = ("img", it[0], it[1], it[2][k])
                if cache is not None and key in cache:
                    out[j] = cache[key]
                else:
                    todo.append((j, key, it))
            if todo:
                px = []
                for j, key, it in todo:
                    raw = self._row(it[0], it[1])[it[2][k]]
                    try:
                        px.append(decode_image(raw, self.resolution))
                    except Exception as e:
                        raise UserError(f"{self.files[it[0]]}: row {it[1]}: `jpg_{it[2][k]}` does not decode ({e})")
                with torch.no_grad():
                    enc = family.encode_images(torch.stack(px))
                for (j, key, _), e in zip(todo, enc):
                    out[j] = e
                    if cache is not None:
                        cache[key] = e.detach()
            images[kind] = torch.stack(out)
        fields = {"label": torch.tensor([it[4] for it in items], dtype=torch.float64)}
        if items[0][6] is not None:
            fields["weight"] = torch.tensor([it[6] for it in items], dtype=torch.float64)
        if items[0][5][0] is not None:
            for k, kind in enumerate(kinds):
                fields["reward_" + kind] = torch.tensor([it[5][k] for it in items], dtype=torch.float64)
        return cond, images, fields


def encode_prompts_cached(family, captions, cache):
    if cache is None:
        with torch.no_grad():
            return family.encode_prompts(captions)
    missing = sorted({c for c in captions if ("txt", c) not in cache})
    if missing:
        with torch.no_grad():
            enc = family.encode_prompts(missing)
        for j, c in enumerate(missing):
            cache[("txt", c)] = {k: v[j:j + 1].detach() for k, v in enc.items()}
    rows = [cache[("txt", c)] for c in captions]
    return {k: torch.cat([r[k] for r in rows]) for k in rows[0]}


def resolve_files(spec):
    if os.path.isdir(spec):
        files = sorted(glob.glob(os.path.join(spec, "*.parquet")))
        if not files:
            raise UserError(f"{spec}: a folder without .parquet files")
        return files
    if any(ch in spec for ch in "*?["):
        files = sorted(f for f in glob.glob(spec) if os.path.isfile(f))
        if not files:
            raise UserError(f"{spec}: no file matches")
        return files
    if not os.path.exists(spec):
        raise UserError(f"{spec}: no such file")
    return [spec]


def open_data(spec, plan, family, log=print):
    """The data source for --data: a seppoc export (.safetensors) or Pick-a-Pic Parquet."""
    if spec.endswith(".safetensors"):
        if not os.path.isfile(spec):
            raise UserError(f"{spec}: no such file")
        return ExportSource(spec, plan)
    return ParquetSource(spec, plan, family.resolution, log=log)
