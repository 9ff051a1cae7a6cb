"""Loading an emitted objective module (`seppoc emit --target torch`) and its PLAN.

A PLAN v1 module (leaves = one err per (model, images), one draw) is normalised to the v2 shape here, so the
executor reads one shape: views, leaves with view/quantity/against, datums, passes over views.
"""
import hashlib
import importlib.util
import inspect

from .family import UserError

DATA = ("winners", "pairs", "labelled")
DATUM_KINDS = ("timestep", "alpha", "sigma", "snr", "progress", "num_timesteps", "label", "weight", "reward")
FIELDS = ("label", "weight", "reward_0", "reward_1")
TIME_DATUMS = ("timestep", "alpha", "sigma", "snr")


class Objective:
    """An emitted module with its normalised PLAN. `call(inputs, params, reduce)` runs `objective`."""

    def __init__(self, path, module, plan, version):
        self.path, self.module, self.plan, self.version = path, module, plan, version
        self.name = module.NAME
        self.sha256 = module.SOURCE_SHA256
        self.inputs = tuple(module.INPUTS)
        self.logs = tuple(getattr(module, "LOGS", ()))
        self.takes_reduce = "reduce" in inspect.signature(module.objective).parameters

    def call(self, inputs, params=None, reduce=None):
        if self.plan["global_loss"] and self.takes_reduce:
            return self.module.objective(inputs, params, reduce=reduce)
        return self.module.objective(inputs, params)

    def image_kinds(self):
        """The image kinds a step needs from the data (winner, loser or image), in a fixed order."""
        kinds = {v["images"] for v in self.plan["views"]}
        sampled = {s["images"] for s in self.plan["samples"]}
        return [k for k in ("winner", "loser", "image") if k in kinds - sampled]


def load_objective(path):
    spec = importlib.util.spec_from_file_location("seppoc_objective", path)
    if spec is None or spec.loader is None:
        raise UserError(f"{path}: not a Python module (expected the output of `seppoc emit --target torch`)")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file")
    except Exception as e:
        raise UserError(f"{path}: the module does not load ({type(e).__name__}: {e})")
    missing = [k for k in ("NAME", "SOURCE", "SOURCE_SHA256", "INPUTS", "PLAN", "objective") if not hasattr(module, k)]
    if missing:
        raise UserError(f"{path}: not an emitted objective module (no {', '.join(missing)}); "
                        "make one with `seppoc emit --target torch FILE.obj -o M.py`")
    source = module.SOURCE if isinstance(module.SOURCE, str) else "".join(module.SOURCE)
    if hashlib.sha256(source.encode("utf-8")).hexdigest() != module.SOURCE_SHA256:
        raise UserError(f"{path}: SOURCE does not match SOURCE_SHA256 (the module was edited after emission; "
                        "regenerate it with `seppoc emit --target torch`)")
    raw = module.PLAN
    version = raw.get("version", 1)
    if version == 1:
        plan = normalise_v1(raw)
    elif version == 2:
        plan = dict(raw)
    else:
        raise UserError(f"{path}: PLAN version {version}; this seppoc_torch reads versions 1 and 2 (update it)")
    try:
        validate(plan, tuple(module.INPUTS))
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path}: malformed PLAN ({type(e).__name__}: {e})")
    return Objective(path, module, plan, version)


def normalise_v1(p):
    """A v1 PLAN in v2 form: one draw, views named by image kind, err leaves only, no data fields."""
    kinds = []
    for pass_ in p["passes"]:
        for k in pass_["images"]:
            if k not in kinds:
                kinds.append(k)
    leaves = {name: {"model": l["model"], "view": l["images"], "images": l["images"], "draw": 0,
                     "grad": l["grad"], "quantity": "err", "against": None} for name, l in p["leaves"].items()}
    return {
        "version": 1, "data": p["data"], "ties": "drop", "fields": [], "noise": p["noise"], "draws": 1,
        "pool": p["pool"], "references": p["references"], "samples": p["samples"],
        "views": [{"name": k, "images": k, "draw": 0} for k in kinds],
        "leaves": leaves, "datums": {},
        "passes": [{"model": q["model"], "taped": q["taped"], "views": list(q["images"]), "keep_predictions": False}
                   for q in p["passes"]],
        "nfe_per_prompt": p.get("nfe_per_prompt", {}), "global_loss": False,
    }


def validate(plan, inputs):
    """Internal consistency: every name the leaves, datums and passes use is defined, every INPUT is fed."""
    if plan["data"] not in DATA:
        raise ValueError(f"data {plan['data']!r} (expected one of {DATA})")
    if plan["ties"] not in ("drop", "keep"):
        raise ValueError(f"ties {plan['ties']!r}")
    if plan["noise"] not in ("shared", "independent"):
        raise ValueError(f"noise {plan['noise']!r}")
    if int(plan["draws"]) < 1:
        raise ValueError(f"draws {plan['draws']} < 1")
    for f in plan["fields"]:
        if f not in FIELDS:
            raise ValueError(f"field {f!r} (expected one of {FIELDS})")
    views = {v["name"]: v for v in plan["views"]}
    refs = plan["references"]
    for name, r in refs.items():
        if r["strategy"] not in ("initial", "latest", "uniform", "ema"):
            raise ValueError(f"reference {name!r}: strategy {r['strategy']!r}")
        if r["strategy"] == "uniform" and r["draw"] not in ("step", "sample"):
            raise ValueError(f"reference {name!r}: draw {r['draw']!r}")
    models = {"policy"} | set(refs)
    for s in plan["samples"]:
        if s["model"] not in models or s["sampler"] not in ("ddim", "ddpm"):
            raise ValueError(f"sample {s}")
    for name, l in plan["leaves"].items():
        if l["model"] not in models or l["view"] not in views or l["quantity"] not in ("err", "dist"):
            raise ValueError(f"leaf {name!r}: {l}")
        if l["quantity"] == "dist" and l["against"] not in models:
            raise ValueError(f"leaf {name!r}: dist against {l['against']!r}")
    for name, d in plan["datums"].items():
        if d["kind"] not in DATUM_KINDS:
            raise ValueError(f"datum {name!r}: kind {d['kind']!r}")
        if d["kind"] in TIME_DATUMS and d["view"] not in views:
            raise ValueError(f"datum {name!r}: view {d['view']!r}")
    for q in plan["passes"]:
        if q["model"] not in models or any(v not in views for v in q["views"]):
            raise ValueError(f"pass {q}")
    fed = set(plan["leaves"]) | set(plan["datums"])
    unfed = [n for n in inputs if n not in fed]
    if unfed:
        raise ValueError(f"INPUTS {unfed} are neither a leaf nor a datum of PLAN")
    for name, l in plan["leaves"].items():
        needed = {l["model"]} | ({l["against"]} if l["quantity"] == "dist" else set())
        for m in needed:
            if not any(q["model"] == m and l["view"] in q["views"] for q in plan["passes"]):
                raise ValueError(f"leaf {name!r}: no pass of {m!r} covers view {l['view']!r}")


def refuse_online(obj):
    """Online objectives (PLAN keys "online_rewards" and "group", absent otherwise) need a reward model to score
    generated images and K rows per prompt; this executor has neither: raises UserError naming what is asked."""
    plan = obj.plan
    where = f"objective {obj.name!r} ({obj.path})"
    scored = list(plan.get("online_rewards", ()))
    if scored:
        raise UserError(f"{where} reads the reward of generated images ({', '.join(scored)}), which a reward model "
                        "scores during training; seppoc-torch train has none (train it with `seppoc run --reward`)")
    group = int(plan.get("group", 1))
    if group > 1:
        raise UserError(f"{where} generates {group} images per prompt (`group = {group}`) and reduces over each "
                        "prompt's group; seppoc-torch train draws one row per prompt (train it with `seppoc run`)")


def check_feedable(obj, family, data):
    """Before training: every leaf and datum the PLAN needs can be produced by `family` and `data` (a
    data source from data.py); raises UserError naming the objective, data file and what is missing."""
    plan = obj.plan
    where = f"objective {obj.name!r} ({obj.path})"
    refuse_online(obj)
    if plan["data"] == "pairs" and not data.has_pairs:
        raise UserError(f"{where} compares winners with losers, but {data.describe()} has no losers")
    if plan["data"] == "labelled" and not data.supports_labelled:
        raise UserError(f"{where} reads labelled images (data labelled), which {data.describe()} cannot give "
                        "(it needs Pick-a-Pic Parquet with label_0)")
    needs_fields = set(plan["fields"])
    for d in plan["datums"].values():
        if d["kind"] == "label":
            needs_fields.add("label")
        elif d["kind"] == "weight":
            needs_fields.add("weight")
        elif d["kind"] == "reward":
            needs_fields.add("reward_0")
    for f in sorted(needs_fields):
        problem = data.field_problem(f)
        if problem:
            raise UserError(f"{where} reads `{f.split('_')[0]}`, but {problem}")
    if plan["ties"] == "keep" and not data.supports_ties:
        raise UserError(f"{where} keeps ties (label 0.5), which {data.describe()} does not record")
    if plan["samples"] and not hasattr(family, "sample"):
        raise UserError(f"{where} samples from a reference, which the {family.name} family cannot do")
    for name, d in plan["datums"].items():
        if d["kind"] in TIME_DATUMS and family.prediction not in ("epsilon", "v_prediction", "flow"):
            raise UserError(f"{where} reads {name}, undefined for a {family.prediction} model")
