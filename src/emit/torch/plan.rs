//! The emitted module's `PLAN` (what a training step must compute) and the small Python-literal printer (`Py`)
//! the whole emitter writes values with.

use crate::check::DataKind;
use crate::check::{Draw, Noise, SamplerKind, Strategy};
use crate::ir::print::image_name;
use crate::ir::{Bound, Datum, ImageRef, ModelRef};

/// The per-step plan as data (PLAN v2; the v1 keys `images` of leaves and passes are kept alongside `views`).
pub(super) fn plan(obj: &Bound) -> Py {
    let s = |v: &str| Py::Str(v.to_string());
    let model = |m: &ModelRef| s(m.name());
    let images = |i: ImageRef| Py::Str(image_name(i));
    let opt = |v: Option<String>| v.map_or(Py::None, Py::Str);
    let p = obj.plan();
    // The order in which seppoc's trainer draws noise: draw first, then image kind (`View`'s order).
    let mut views = obj.views(None);
    views.sort();
    let view_list = views
        .iter()
        .map(|v| {
            Py::Dict(vec![
                ("name".into(), Py::Str(v.name())),
                ("images".into(), images(v.images)),
                ("draw".into(), Py::Int(u64::from(v.draw))),
            ])
        })
        .collect();
    let draws = views.iter().map(|v| u64::from(v.draw) + 1).max().unwrap_or(1);
    let leaves = obj
        .inputs
        .iter()
        .map(|i| {
            let d = vec![
                ("model".into(), model(&i.model)),
                ("view".into(), Py::Str(i.view().name())),
                ("images".into(), images(i.images)),
                ("draw".into(), Py::Int(u64::from(i.draw))),
                ("grad".into(), Py::Bool(i.model == ModelRef::Policy)),
                ("quantity".into(), s(if i.against.is_some() { "dist" } else { "err" })),
                ("against".into(), opt(i.against.clone())),
            ];
            (i.name(), Py::Dict(d))
        })
        .collect();
    let datums = obj
        .datums
        .iter()
        .map(|d| {
            let (kind, view, imgs) = match d {
                Datum::Time(q, v) => (q.name(), Some(v.name()), Some(image_name(v.images))),
                Datum::Progress => ("progress", None, None),
                Datum::Timesteps => ("num_timesteps", None, None),
                Datum::Label => ("label", None, None),
                Datum::Weight => ("weight", None, None),
                Datum::Reward(x) => ("reward", None, Some(image_name(*x))),
            };
            let entry = vec![
                ("kind".into(), s(kind)),
                ("view".into(), opt(view)),
                ("images".into(), opt(imgs)),
                ("per_step".into(), Py::Bool(d.per_step())),
            ];
            (d.name(), Py::Dict(entry))
        })
        .collect();
    // Data columns: `reward_0` is the reward of a sample's winner (or labelled image), `reward_1` its loser's.
    let mut fields = Vec::new();
    for (field, read) in [
        ("label", obj.datums.contains(&Datum::Label)),
        ("weight", obj.datums.contains(&Datum::Weight)),
        (
            "reward_0",
            obj.datums.contains(&Datum::Reward(ImageRef::Winner))
                || obj.datums.contains(&Datum::Reward(ImageRef::Image)),
        ),
        ("reward_1", obj.datums.contains(&Datum::Reward(ImageRef::Loser))),
    ] {
        if read {
            fields.push(s(field));
        }
    }
    let keep_ties = obj.data == DataKind::Pairs && obj.datums.contains(&Datum::Label);
    // The models whose predictions a `dist` leaf compares (both sides).
    let compared: Vec<ModelRef> = obj
        .inputs
        .iter()
        .filter_map(|i| i.against.as_ref().map(|r| [i.model.clone(), ModelRef::Reference(r.clone())]))
        .flatten()
        .collect();
    let passes = p
        .passes
        .iter()
        .map(|pass| {
            Py::Dict(vec![
                ("model".into(), model(&pass.model)),
                ("taped".into(), Py::Bool(pass.model == ModelRef::Policy)),
                ("views".into(), Py::List(pass.images.iter().map(|v| Py::Str(v.name())).collect())),
                ("images".into(), Py::List(pass.images.iter().map(|v| images(v.images)).collect())),
                ("keep_predictions".into(), Py::Bool(compared.contains(&pass.model))),
            ])
        })
        .collect();
    let references = obj
        .references
        .iter()
        .map(|r| {
            let d = match r.strategy {
                Strategy::Initial => vec![("strategy".into(), s("initial"))],
                Strategy::Latest => vec![("strategy".into(), s("latest"))],
                Strategy::Uniform(draw) => vec![
                    ("strategy".into(), s("uniform")),
                    ("draw".into(), s(if draw == Draw::Step { "step" } else { "sample" })),
                ],
                Strategy::Ema { decay } => vec![("strategy".into(), s("ema")), ("decay".into(), Py::Float(decay))],
            };
            (r.name.clone(), Py::Dict(d))
        })
        .collect();
    let samples = obj
        .samples
        .iter()
        .enumerate()
        .map(|(k, spec)| {
            let mut d = vec![
                ("images".into(), Py::Str(format!("sample{k}"))),
                ("model".into(), s(&spec.model)),
                ("sampler".into(), s(if spec.sampler == SamplerKind::Ddim { "ddim" } else { "ddpm" })),
                ("steps".into(), Py::Int(spec.steps)),
                ("cfg".into(), Py::Float(spec.cfg)),
                ("eta".into(), Py::Float(spec.eta)),
            ];
            if spec.group > 1 {
                d.push(("group".into(), Py::Int(u64::from(spec.group))));
            }
            Py::Dict(d)
        })
        .collect();
    let pool = match obj.pool {
        Some(pool) => Py::Dict(vec![("every".into(), Py::Int(pool.every)), ("keep".into(), Py::Int(pool.keep))]),
        None => Py::None,
    };
    // Keys that only online objectives have: absent means one row per prompt and no reward model.
    let mut online = Vec::new();
    if obj.group() > 1 {
        online.push(("group".into(), Py::Int(u64::from(obj.group()))));
    }
    let scored: Vec<Py> = obj.datums.iter().filter(|d| d.is_online_reward()).map(|d| Py::Str(d.name())).collect();
    if !scored.is_empty() {
        online.push(("online_rewards".into(), Py::List(scored)));
    }
    let mut entries = vec![
        ("version".into(), Py::Int(2)),
        ("data".into(), s(obj.data.word())),
        ("ties".into(), s(if keep_ties { "keep" } else { "drop" })),
        ("fields".into(), Py::List(fields)),
        ("noise".into(), s(if obj.noise == Noise::Shared { "shared" } else { "independent" })),
        ("draws".into(), Py::Int(draws)),
        ("pool".into(), pool),
        ("references".into(), Py::Dict(references)),
        ("samples".into(), Py::List(samples)),
        ("views".into(), Py::List(view_list)),
        ("leaves".into(), Py::Dict(leaves)),
        ("datums".into(), Py::Dict(datums)),
        ("passes".into(), Py::List(passes)),
        (
            "nfe_per_prompt".into(),
            Py::Dict(vec![("passes".into(), Py::Int(p.nfe_passes)), ("sampling".into(), Py::Int(p.nfe_sampling))]),
        ),
        ("global_loss".into(), Py::Bool(true)),
    ];
    entries.extend(online);
    Py::Dict(entries)
}

/// A Python literal, rendered with keys in the given order.
pub(super) enum Py {
    None,
    Bool(bool),
    Int(u64),
    Float(f64),
    Str(String),
    List(Vec<Py>),
    Dict(Vec<(String, Py)>),
}

impl Py {
    pub(super) fn render(&self, indent: usize) -> String {
        let pad = "    ".repeat(indent + 1);
        let close = "    ".repeat(indent);
        match self {
            Py::None => "None".into(),
            Py::Bool(b) => if *b { "True" } else { "False" }.into(),
            Py::Int(i) => i.to_string(),
            Py::Float(f) => py_float(*f),
            Py::Str(s) => py_str(s),
            Py::List(items) if items.is_empty() => "[]".into(),
            Py::Dict(items) if items.is_empty() => "{}".into(),
            Py::List(items) if items.iter().all(Py::is_atom) => {
                format!("[{}]", items.iter().map(|i| i.render(0)).collect::<Vec<_>>().join(", "))
            }
            Py::Dict(items) if items.iter().all(|(_, v)| v.is_atom()) => {
                let inner: Vec<String> = items.iter().map(|(k, v)| format!("{}: {}", py_str(k), v.render(0))).collect();
                format!("{{{}}}", inner.join(", "))
            }
            Py::List(items) => {
                let inner: String = items.iter().map(|i| format!("{pad}{},\n", i.render(indent + 1))).collect();
                format!("[\n{inner}{close}]")
            }
            Py::Dict(items) => {
                let inner: String =
                    items.iter().map(|(k, v)| format!("{pad}{}: {},\n", py_str(k), v.render(indent + 1))).collect();
                format!("{{\n{inner}{close}}}")
            }
        }
    }

    fn is_atom(&self) -> bool {
        !matches!(self, Py::List(_) | Py::Dict(_))
    }
}

/// A float as a Python expression that reads back to the same f64.
pub(super) fn py_float(f: f64) -> String {
    if f.is_nan() {
        "math.nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "math.inf" } else { "-math.inf" }.into()
    } else {
        // Rust's `{:?}` is the shortest text that reads back exactly, always with a `.` or an exponent.
        format!("{f:?}")
    }
}

/// A string as a Python literal (a JSON string literal is one).
pub(super) fn py_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

pub(super) fn py_tuple<'a>(items: impl Iterator<Item = &'a String>) -> String {
    let items: Vec<String> = items.map(|s| py_str(s)).collect();
    match items.len() {
        1 => format!("({},)", items[0]),
        _ => format!("({})", items.join(", ")),
    }
}
