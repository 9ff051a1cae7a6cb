//! Per-sample data fields: which records each data kind trains on (ties dropped, kept with label 0.5 when an
//! objective reads `label`, left out of `data labelled`), the optional `reward_0`/`reward_1`/`weight` columns
//! (with seppoc's `judge_0`/`judge_1` as the reward where a file has no reward columns), and every missing or bad
//! value an error naming the file and the column or row.

use arrow_array::{ArrayRef, BinaryArray, Float64Array, StringArray};
use parquet::arrow::ArrowWriter;
use seppoc::data::parquet::{read_fields, write, Comparison, ParquetError};
use seppoc::data::{FieldNeeds, Image, PreferenceSet};
use seppoc::engine::run::{field_needs, keeps_ties, shape};
use seppoc::frontend::Objective as Parsed;
use seppoc::ir::{self, Objective};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("seppoc-fields-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn image(seed: usize) -> Image {
    Image::from_fn01(8, 8, |y, x| {
        let v = ((x * 5 + y * 3 + seed * 7) % 13) as f32 / 12.0;
        [v, 1.0 - v, (seed % 4) as f32 / 3.0]
    })
}

/// Row `i` with `label_0`; image k's judge score is `10 i + k`.
fn comparison(i: usize, label_0: f64) -> Comparison {
    Comparison {
        caption: format!("prompt {i}"),
        images: [image(2 * i), image(2 * i + 1)],
        label_0,
        models: ["a".into(), "b".into()],
        judge: [10.0 * i as f64, 10.0 * i as f64 + 1.0],
        ranking_id: i as i64,
        user_id: 0,
        num_example_per_prompt: 1,
    }
}

fn objective(name: &str) -> Objective {
    let path = format!("{}/objectives/{name}.obj", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("objective exists");
    let parsed = Parsed::parse(&path, &text).unwrap_or_else(|(_, d)| panic!("{name}: {d:?}"));
    ir::lower(&parsed.checked)
}

fn inline(text: &str) -> Objective {
    let parsed = Parsed::parse("inline.obj", text).unwrap_or_else(|(_, d)| panic!("{d:?}"));
    ir::lower(&parsed.checked)
}

/// The samples `obj` trains on from the file at `path` (8-pixel images).
fn samples(path: &Path, obj: &Objective) -> PreferenceSet {
    let data = read_fields(path, 8, field_needs(obj)).expect("reads");
    shape(obj.data, data.pairs, keeps_ties(obj).then_some(data.ties))
}

/// Labels 1, 0, tie, 1: three decided comparisons and one tie (a file per test, as tests run in parallel).
fn four_rows(name: &str) -> PathBuf {
    let path = dir().join(name);
    let rows: Vec<Comparison> = [1.0, 0.0, 0.5, 1.0].iter().enumerate().map(|(i, &l)| comparison(i, l)).collect();
    write(&path, &rows, None).expect("written");
    path
}

#[test]
fn ties_are_dropped_kept_with_label_one_half_or_left_out_as_documented() {
    let path = four_rows("ties.parquet");
    // dpo does not read `label`: the tie is dropped, as Diffusion-DPO does.
    let dpo = samples(&path, &objective("dpo"));
    assert_eq!(dpo.len(), 3);
    assert!(dpo.items.iter().all(|it| it.fields.label == 1.0 && it.prompt != "prompt 2"));
    // dpo_label reads it: the tie is kept with label 0.5, image 0 as winner and image 1 as loser.
    let labelled_pairs = samples(&path, &objective("dpo_label"));
    assert_eq!(labelled_pairs.len(), 4);
    let tie = labelled_pairs.items.iter().find(|it| it.prompt == "prompt 2").expect("the tie is kept");
    assert_eq!(tie.fields.label, 0.5);
    let close = |a: &Image, b: &Image| a.data.iter().zip(&b.data).all(|(x, y)| (x - y).abs() <= 1.0 / 255.0 + 1e-6);
    assert!(close(&tie.winner, &image(4)) && close(tie.loser.as_ref().expect("pair"), &image(5)));
    let decided: Vec<f64> =
        labelled_pairs.items.iter().filter(|it| it.prompt != "prompt 2").map(|it| it.fields.label).collect();
    assert_eq!(decided, [1.0, 1.0, 1.0]);
    // Unpaired labelled data: each decided comparison gives its winner (1) and its loser (0); the tie is left out.
    let kto = samples(&path, &objective("kto_unpaired"));
    assert_eq!(kto.len(), 6);
    assert!(kto.items.iter().all(|it| it.loser.is_none() && it.prompt != "prompt 2"));
    let labels: Vec<f64> = kto.items.iter().map(|it| it.fields.label).collect();
    assert_eq!(labels, [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
    // Row 1 has label_0 = 0: image 1 won, so it is the desirable sample.
    assert!(close(&kto.items[2].winner, &image(3)) && close(&kto.items[3].winner, &image(2)));
    // SFT sees the winners of the decided comparisons only.
    assert_eq!(samples(&path, &objective("sft")).len(), 3);
}

#[test]
fn rewards_follow_their_image_and_fall_back_to_the_judge_columns() {
    let path = four_rows("rewards.parquet");
    let obj = inline("objective r\ndata pairs\nloss mean(reward(loser) * err(policy, winner) + reward(winner))\n");
    assert_eq!(field_needs(&obj), FieldNeeds { reward: true, weight: false });
    let set = samples(&path, &obj);
    // seppoc's file has no reward columns: judge_0/judge_1 are read, swapped with the images when image 1 won.
    let rewards: Vec<[Option<f64>; 2]> = set.items.iter().map(|it| it.fields.reward).collect();
    assert_eq!(rewards, [[Some(0.0), Some(1.0)], [Some(11.0), Some(10.0)], [Some(30.0), Some(31.0)]]);
    let unpaired = inline("objective r\ndata labelled\nloss mean(reward(image) * err(policy, image))\n");
    let set = samples(&path, &unpaired);
    let r: Vec<(f64, Option<f64>)> = set.items.iter().map(|it| (it.fields.label, it.fields.reward[0])).collect();
    assert_eq!(r[2..4], [(1.0, Some(11.0)), (0.0, Some(10.0))]);
    // Without the need, the columns are not read.
    let plain = read_fields(&path, 8, FieldNeeds::default()).expect("reads");
    assert!(plain.pairs.items.iter().all(|it| it.fields.reward == [None, None]));
}

/// A file with three decided rows and the optional columns asked for (row 2's weight given by `weight_2`).
fn with_columns(name: &str, weight_2: Option<f64>, with_weight: bool, with_reward: bool, with_judge: bool) -> PathBuf {
    let path = dir().join(name);
    let png = |seed: usize| {
        let mut out = std::io::Cursor::new(Vec::new());
        image(seed).to_rgb8().write_to(&mut out, image::ImageFormat::Png).expect("png");
        out.into_inner()
    };
    let mut columns: Vec<(&str, ArrayRef)> = vec![
        ("caption", Arc::new(StringArray::from(vec!["a", "b", "c"]))),
        ("jpg_0", Arc::new(BinaryArray::from_iter_values([png(0), png(1), png(2)].iter()))),
        ("jpg_1", Arc::new(BinaryArray::from_iter_values([png(3), png(4), png(5)].iter()))),
        ("label_0", Arc::new(Float64Array::from(vec![1.0, 0.0, 1.0]))),
    ];
    if with_judge {
        columns.push(("judge_0", Arc::new(Float64Array::from(vec![-1.0, -1.0, -1.0]))));
        columns.push(("judge_1", Arc::new(Float64Array::from(vec![-1.0, -1.0, -1.0]))));
    }
    if with_reward {
        columns.push(("reward_0", Arc::new(Float64Array::from(vec![0.9, 0.2, 0.7]))));
        columns.push(("reward_1", Arc::new(Float64Array::from(vec![0.1, 0.8, 0.3]))));
    }
    if with_weight {
        columns.push(("weight", Arc::new(Float64Array::from(vec![Some(1.0), Some(2.0), weight_2]))));
    }
    let batch = arrow_array::RecordBatch::try_from_iter(columns).expect("batch");
    let file = std::fs::File::create(&path).expect("create");
    let mut w = ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
    path
}

#[test]
fn reward_columns_win_over_judge_columns_and_weights_reach_both_images() {
    let path = with_columns("full.parquet", Some(0.5), true, true, true);
    let obj = inline("objective w\ndata labelled\nloss mean(weight * reward(image) * err(policy, image))\n");
    let set = samples(&path, &obj);
    let got: Vec<(f64, Option<f64>, Option<f64>)> =
        set.items.iter().map(|it| (it.fields.label, it.fields.reward[0], it.fields.weight)).collect();
    assert_eq!(
        got,
        [
            (1.0, Some(0.9), Some(1.0)),
            (0.0, Some(0.1), Some(1.0)),
            (1.0, Some(0.8), Some(2.0)),
            (0.0, Some(0.2), Some(2.0)),
            (1.0, Some(0.7), Some(0.5)),
            (0.0, Some(0.3), Some(0.5)),
        ]
    );
}

#[test]
fn missing_or_bad_fields_are_errors_naming_the_file_and_the_column_or_row() {
    let weight = FieldNeeds { reward: false, weight: true };
    let reward = FieldNeeds { reward: true, weight: false };
    // No weight column.
    let path = with_columns("no_weight.parquet", None, false, true, true);
    let e = read_fields(&path, 8, weight).expect_err("no weight column");
    assert!(matches!(e, ParquetError::MissingField { column: "weight", .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("no_weight.parquet") && msg.contains("`weight`"), "{msg}");
    // No reward columns at all (neither reward_k nor judge_k), before any image is decoded.
    let bare = with_columns("no_reward.parquet", Some(0.5), true, false, false);
    let e = read_fields(&bare, 8, reward).expect_err("no reward column");
    assert!(matches!(e, ParquetError::MissingField { column: "reward_0", .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("no_reward.parquet") && msg.contains("reward_1") && msg.contains("judge_0"), "{msg}");
    assert!(read_fields(&bare, 8, weight).is_ok(), "the weight alone is there");
    // A null weight names its row; a negative one too.
    let null = with_columns("null_weight.parquet", None, true, true, false);
    let e = read_fields(&null, 8, weight).expect_err("null weight").to_string();
    assert!(e.contains("null_weight.parquet") && e.contains("row 2") && e.contains("`weight`"), "{e}");
    let negative = with_columns("neg_weight.parquet", Some(-1.0), true, true, false);
    let e = read_fields(&negative, 8, weight).expect_err("negative weight").to_string();
    assert!(e.contains("neg_weight.parquet") && e.contains("row 2") && e.contains(">= 0"), "{e}");
    let infinite = with_columns("inf_weight.parquet", Some(f64::INFINITY), true, true, false);
    assert!(read_fields(&infinite, 8, weight).is_err());
    // A file the objective does not need the fields of reads whatever those columns hold.
    assert!(read_fields(&negative, 8, FieldNeeds::default()).is_ok());
}

mod shaping {
    use super::image;
    use proptest::prelude::*;
    use seppoc::check::DataKind;
    use seppoc::data::{Fields, PreferenceItem, PreferenceSet};
    use seppoc::engine::run::shape;

    fn item(k: usize, label: f64) -> PreferenceItem {
        let fields = Fields { label, reward: [Some(k as f64), Some(-(k as f64))], weight: Some(0.5 * k as f64) };
        PreferenceItem { prompt: format!("p{k}"), winner: image(2 * k), loser: Some(image(2 * k + 1)), fields }
    }

    proptest! {
        /// For any mix of decided pairs and ties: winners and pairs drop the ties unless given them (an
        /// objective that reads `label`), which keeps them after the pairs with label 0.5; labelled gives each
        /// decided pair's winner (label 1, its reward) then its loser (label 0, its reward), both with the
        /// pair's weight, and no tie.
        #[test]
        fn ties_dropped_kept_or_left_out(decided in 0usize..6, ties in 0usize..4) {
            let pairs = PreferenceSet { items: (0..decided).map(|k| item(k, 1.0)).collect() };
            let tie_items: Vec<PreferenceItem> = (decided..decided + ties).map(|k| item(k, 0.5)).collect();
            prop_assert_eq!(&shape(DataKind::Winners, pairs.clone(), None), &pairs);
            prop_assert_eq!(&shape(DataKind::Pairs, pairs.clone(), None), &pairs);
            let kept = shape(DataKind::Pairs, pairs.clone(), Some(tie_items.clone()));
            prop_assert_eq!(&kept.items[..decided], &pairs.items[..]);
            prop_assert_eq!(&kept.items[decided..], &tie_items[..]);
            let labelled = shape(DataKind::Labelled, pairs.clone(), Some(tie_items));
            prop_assert_eq!(labelled.len(), 2 * decided);
            for (k, two) in labelled.items.chunks(2).enumerate() {
                let p = &pairs.items[k];
                prop_assert_eq!((&two[0].winner, two[0].fields.label, two[0].fields.reward[0]), (&p.winner, 1.0, p.fields.reward[0]));
                prop_assert_eq!((two[1].loser.as_ref(), two[1].fields.label, two[1].fields.reward[0]), (None, 0.0, p.fields.reward[1]));
                prop_assert_eq!(Some(&two[1].winner), p.loser.as_ref());
                prop_assert!(two.iter().all(|s| s.fields.weight == p.fields.weight && s.prompt == p.prompt));
            }
        }
    }
}
