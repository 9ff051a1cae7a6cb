//! `seppoc search`: an evolutionary search over objectives in the language itself.
//!
//! A search starts from seed objectives of one data kind (the shipped ones, each a baseline with its main
//! parameter tuned over [`propose::GRID`]) and random well-typed trees, and proposes children with typed
//! operators on the syntax tree ([`propose`]). Every child is printed by the canonical printer and checked;
//! one that does not check is dropped with its diagnostic codes counted. A checked child is screened on the f64
//! oracle ([`screen`]: non-finite, independent of the policy, wrong sign) and compared with every earlier
//! candidate by canonical form and gradient fingerprint. Survivors go through the funnel ([`funnel`]): short
//! trainings judged on a few validation prompts, and the top third of each stage's results (asynchronous
//! successive halving, Li et al., arXiv 1810.05934) promoted to longer runs with more seeds and prompts.
//!
//! Everything is a function of the settings and the seed: the proposals of generation `g` come from a stream
//! seeded by (seed, g) and the archive so far, and every evaluation trains from the base model with fixed
//! training seeds. A stopped search therefore resumes by replaying itself: it proposes and screens again (which
//! is cheap) and takes each evaluation already in `archive.jsonl` from there instead of training again.

pub mod archive;
pub mod funnel;
pub mod output;
pub mod propose;
pub mod screen;
pub mod seeds;
mod sitting;

use archive::settings_path;
pub use archive::{open_out, Budget, Counts, Record, SearchSettings, StageResult, Stopped};
pub use funnel::{validation_prompts, Funnel, Outcome, Stage, Training};
pub use output::write_outputs;
use seeds::set_param;
pub use seeds::{data_kind, default_training, main_param, read_seeds, shipped_seeds};

use crate::check::{Checked, DataKind};
use crate::engine::files::write_json;
use crate::ir::{lower, Bound};
use anyhow::{bail, Context};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A search in progress.
pub struct Search<'a> {
    /// Its settings.
    pub settings: SearchSettings,
    out: PathBuf,
    funnel: &'a Funnel,
    kind: DataKind,
    seeds: Vec<(String, Checked)>,
    /// Every candidate so far.
    pub records: Vec<Record>,
    checked: Vec<Option<Checked>>,
    bound: Vec<Option<Bound>>,
    fingerprints: Vec<(usize, screen::Fingerprint)>,
    hashes: HashMap<String, usize>,
    cached: HashMap<String, Vec<StageResult>>,
    /// What was dropped and rejected.
    pub counts: Counts,
    /// Evaluations spent.
    pub spent: usize,
    fresh: usize,
    started: Instant,
    log: Box<dyn FnMut(&str) + 'a>,
}

impl<'a> Search<'a> {
    /// A search into `out` (created) with these settings and seeds; `previous` are the records of an earlier
    /// sitting of the same search ([`open_out`]), whose evaluations are reused. `log` receives progress lines.
    pub fn new(
        settings: SearchSettings,
        seeds: Vec<(String, Checked)>,
        out: &Path,
        funnel: &'a Funnel,
        previous: Vec<Record>,
        log: Box<dyn FnMut(&str) + 'a>,
    ) -> anyhow::Result<Search<'a>> {
        let kind = data_kind(&settings.data_kind)?;
        if let Some((n, c)) = seeds.iter().find(|(_, c)| c.data != kind) {
            bail!("seed objective `{n}` has `data {}`, not `data {}`", c.data.word(), kind.word());
        }
        if settings.stages.is_empty() || settings.eta < 2 || settings.population == 0 {
            bail!("a search needs at least one stage, --eta 2 or more and --population 1 or more");
        }
        if let Some(s) =
            settings.stages.iter().find(|s| s.steps == 0 || s.seeds == 0 || s.prompts == 0 || s.samples == 0)
        {
            bail!("every stage needs at least 1 update, seed, prompt and sample, found {s:?}");
        }
        std::fs::create_dir_all(out).with_context(|| format!("cannot create `{}`", out.display()))?;
        write_json(&settings_path(out), &serde_json::json!({ "schema": 1, "settings": settings }))?;
        let cached = previous.into_iter().map(|r| (r.hash.clone(), r.stages)).collect();
        Ok(Search {
            settings,
            out: out.to_path_buf(),
            funnel,
            kind,
            seeds,
            records: Vec::new(),
            checked: Vec::new(),
            bound: Vec::new(),
            fingerprints: Vec::new(),
            hashes: HashMap::new(),
            cached,
            counts: Counts::default(),
            spent: 0,
            fresh: 0,
            started: Instant::now(),
            log,
        })
    }

    /// The output directory.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// Admits a checked child as a candidate: archived, then rejected (duplicate, oracle) or kept for training.
    fn admit(
        &mut self,
        checked: Checked,
        text: String,
        meta: (usize, &str, Option<(String, f64)>, Vec<usize>, String),
    ) {
        let (generation, origin, baseline, parents, mutation) = meta;
        let id = self.records.len();
        let hash = propose::canonical_hash(&checked.file);
        let mut rejection = self.hashes.get(&hash).map(|&of| screen::Rejection::SameText(of));
        let mut bound = None;
        if rejection.is_none() {
            // Parameters at their defaults (a candidate's constants are its own).
            let b = lower(&checked).bind_defaults();
            let horizon = self.settings.stages.iter().map(|s| s.steps).max();
            match screen::screen_for(&b, horizon) {
                Ok(fp) => match self.fingerprints.iter().find(|(_, other)| other.same(&fp)) {
                    Some((of, _)) => rejection = Some(screen::Rejection::SameGradient(*of)),
                    None => {
                        self.fingerprints.push((id, fp));
                        bound = Some(b);
                    }
                },
                Err(r) => rejection = Some(r),
            }
        }
        self.hashes.entry(hash.clone()).or_insert(id);
        if let Some(r) = &rejection {
            *self.counts.rejected.entry(r.code().to_string()).or_default() += 1;
        }
        self.records.push(Record {
            id,
            name: checked.name.clone(),
            generation,
            origin: origin.to_string(),
            baseline,
            parents,
            mutation,
            hash,
            source: text,
            rejection: rejection.map(|r| format!("{}: {}", r.code(), r.describe())),
            stages: Vec::new(),
        });
        self.checked.push(Some(checked));
        self.bound.push(bound);
    }

    /// Generation 0: every seed with its main parameter at each factor of the grid (factor 1 first, so a short
    /// budget still sees every seed), then the random trees.
    fn generation_zero(&mut self) {
        let factors = std::iter::once(1.0).chain(propose::GRID);
        for factor in factors {
            for (name, checked) in self.seeds.clone() {
                let Some(main) = main_param(&checked) else {
                    if factor == 1.0 {
                        self.admit_seed(&name, checked.file.clone(), 1.0);
                    }
                    continue;
                };
                let mut file = checked.file.clone();
                if factor != 1.0 && !set_param(&mut file, &main, factor) {
                    continue;
                }
                self.admit_seed(&name, file, factor);
            }
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.settings.seed ^ 0xA11C_E5EE_D000_0000);
        let mut made = 0;
        for _ in 0..self.settings.random * 50 {
            if made == self.settings.random {
                break;
            }
            let file = propose::random_tree(self.kind, &mut rng);
            let name = format!("c{:05}", self.records.len());
            self.counts.operators.entry("random".into()).or_default().0 += 1;
            self.counts.proposed += 1;
            match propose::finish(file, &name, &[]) {
                Ok((text, checked)) => {
                    self.counts.operators.entry("random".into()).or_default().1 += 1;
                    self.admit(checked, text, (0, "random", None, Vec::new(), "random tree".into()));
                    made += 1;
                }
                Err(diags) => self.count_failure(&diags),
            }
        }
    }

    fn admit_seed(&mut self, name: &str, file: crate::syntax::ast::File, factor: f64) {
        let obj_name = if factor == 1.0 { name.to_string() } else { format!("{name}_x{factor}").replace('.', "_") };
        match propose::finish(file, &obj_name, &[]) {
            Ok((text, checked)) => {
                let mutation = if factor == 1.0 { "shipped".to_string() } else { format!("main parameter x {factor}") };
                self.admit(checked, text, (0, "baseline", Some((name.to_string(), factor)), Vec::new(), mutation));
            }
            // A factor outside the parameter's domain.
            Err(diags) => self.count_failure(&diags),
        }
    }

    fn count_failure(&mut self, diags: &[crate::diag::Diagnostic]) {
        let mut codes: Vec<String> = diags
            .iter()
            .filter(|d| d.severity == crate::diag::Severity::Error)
            .map(|d| format!("{:?}", d.code))
            .collect();
        codes.dedup();
        for c in codes {
            *self.counts.check_failed.entry(c).or_default() += 1;
        }
    }

    /// Ids of trained candidates with a stage-1 score.
    fn scored(&self) -> Vec<usize> {
        self.records.iter().filter(|r| r.score_at(1).is_some()).map(|r| r.id).collect()
    }

    /// Tournament selection (size 3) on the stage-1 score.
    fn tournament(&self, pool: &[usize], rng: &mut ChaCha8Rng) -> Option<usize> {
        (0..3).filter_map(|_| pool.choose(rng).copied()).max_by(|a, b| {
            self.records[*a]
                .score_at(1)
                .partial_cmp(&self.records[*b].score_at(1))
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(b.cmp(a))
        })
    }

    /// Generation `g` ≥ 1: children of tournament-selected parents until `population` of them check.
    fn generation(&mut self, g: usize) {
        let mut rng =
            ChaCha8Rng::seed_from_u64(self.settings.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(g as u64));
        let pool = self.scored();
        if pool.is_empty() {
            return;
        }
        let mut made = 0;
        for _ in 0..self.settings.population * 50 {
            if made == self.settings.population {
                break;
            }
            let Some(a) = self.tournament(&pool, &mut rng) else { break };
            let b = self.tournament(&pool, &mut rng);
            let (Some(pa), donor) = (self.checked[a].clone(), b.and_then(|b| self.checked[b].clone())) else {
                continue;
            };
            let Some(p) = propose::propose(&pa, donor.as_ref(), &mut rng) else { continue };
            let op = p.mutation.split(':').next().unwrap_or("?").to_string();
            let parents = if op == "crossover" { vec![a, b.unwrap_or(a)] } else { vec![a] };
            self.counts.proposed += 1;
            self.counts.operators.entry(op.clone()).or_default().0 += 1;
            let name = format!("c{:05}", self.records.len());
            match propose::finish(p.file, &name, &[]) {
                Ok((text, checked)) => {
                    self.counts.operators.entry(op).or_default().1 += 1;
                    self.admit(checked, text, (g, "proposal", None, parents, p.mutation));
                    made += 1;
                }
                Err(diags) => self.count_failure(&diags),
            }
        }
    }

    /// Evaluations computed in this sitting (not taken from the archive).
    pub fn fresh(&self) -> usize {
        self.fresh
    }

    /// The data kind.
    pub fn kind(&self) -> DataKind {
        self.kind
    }

    /// The funnel.
    pub fn funnel(&self) -> &Funnel {
        self.funnel
    }
}
