//! The preference data a run trains on, shaped for its objective's data kind: which records (ties or not),
//! which images each sample holds, and the fields (`label`, `reward`, `weight`) the objective reads.

use super::settings::RunSettings;
use crate::check::DataKind;
use crate::data::{load_imagefolder, FieldNeeds, PreferenceSet};
use crate::engine::open::Opened;
use crate::ir::{Datum, Objective};
use anyhow::bail;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;

/// The optional fields an objective reads, which the data must supply for every sample.
pub fn field_needs(obj: &Objective) -> FieldNeeds {
    FieldNeeds {
        reward: obj.datums.iter().any(|d| matches!(d, Datum::Reward(_)) && d.is_field()),
        weight: obj.datums.contains(&Datum::Weight),
    }
}

/// Whether the objective keeps Pick-a-Pic ties (label 0.5): `data pairs` does when it reads `label`.
pub fn keeps_ties(obj: &Objective) -> bool {
    obj.data == DataKind::Pairs && obj.datums.contains(&Datum::Label)
}

/// The preference data a run trains on (see [`RunSettings::data`]) and where it came from (`synthetic` or the
/// path), shaped for `obj`'s data kind (see [`shape`]). An objective that reads `reward` or `weight` needs a
/// Parquet file with those columns: anything else is an error naming the data and the field.
pub fn load_data(settings: &RunSettings, base: &Opened, obj: &Objective) -> anyhow::Result<(PreferenceSet, String)> {
    let chosen = settings.data.clone().map(PathBuf::from).or_else(|| super::default_data(&base.path));
    let side = base.model.config().image_size;
    let needs = field_needs(obj);
    let no_fields = |what: &str| -> anyhow::Result<()> {
        let field = match (needs.reward, needs.weight) {
            (true, _) => "reward",
            (false, true) => "weight",
            (false, false) => return Ok(()),
        };
        bail!(
            "objective `{}` reads `{field}`, but {what} has no {field}s: give --data FILE.parquet with the columns \
             {} (see the README's Parquet section)",
            obj.name,
            if field == "reward" { "`reward_0` and `reward_1`" } else { "`weight`" }
        )
    };
    let file = match chosen {
        Some(p) if p.as_os_str() != "synthetic" => p,
        _ => {
            no_fields("the synthetic data set (the world's renders)")?;
            let mut rng = ChaCha8Rng::seed_from_u64(settings.seed ^ 0x5eed_da7a);
            let set = base.world.preference_set(settings.data_size, &mut rng);
            return Ok((shape(obj.data, set, None), "synthetic".into()));
        }
    };
    let frames = base.world.frames();
    let set = if file.is_dir() {
        if frames != 1 {
            bail!(
                "`{}` is an imagefolder, which holds images; a {frames}-frame clip model trains on a Parquet file of \
                 clips (`seppoc collect --world video` writes one)",
                file.display()
            );
        }
        no_fields(&format!("the imagefolder `{}`", file.display()))?;
        shape(obj.data, load_imagefolder(&file, side).map_err(|e| anyhow::anyhow!("{e}"))?, None)
    } else {
        let read = crate::data::parquet::read_clips(&file, side, frames, needs)?;
        shape(obj.data, read.pairs, keeps_ties(obj).then_some(read.ties))
    };
    if set.is_empty() {
        bail!("`{}` has no samples for `data {}`", file.display(), obj.data.word());
    }
    Ok((set, file.display().to_string()))
}

/// The samples of a data kind: `winners` and `pairs` train on the decided pairs, `pairs` followed by `ties`
/// when given (an objective that reads `label`: each tie with label 0.5, image 0 as `winner`); `labelled` on
/// each image of the decided pairs as a sample of its own (label 1 for the winner, 0 for the loser; ties are
/// left out).
pub fn shape(kind: DataKind, pairs: PreferenceSet, ties: Option<Vec<crate::data::PreferenceItem>>) -> PreferenceSet {
    match kind {
        DataKind::Winners => pairs,
        DataKind::Pairs => {
            let mut items = pairs.items;
            items.extend(ties.unwrap_or_default());
            PreferenceSet { items }
        }
        DataKind::Labelled => pairs.labelled(),
    }
}
