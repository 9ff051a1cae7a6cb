//! A search's sittings: evaluating candidates through the funnel (`--jobs` at a time, reusing the archive),
//! successive-halving promotion, the budget, progress lines and a safe stop.

use super::{write_outputs, Budget, Outcome, Search, Stage, StageResult, Stopped};
use crate::engine::stop::Interrupted;
use crate::ir::Bound;
use anyhow::bail;
use std::time::Instant;

impl<'a> Search<'a> {
    /// Whether the budget allows another evaluation.
    fn budget_left(&self, budget: &Budget) -> Result<(), Stopped> {
        if budget.evaluations.is_some_and(|n| self.spent >= n) {
            return Err(Stopped::Evaluations);
        }
        if budget.minutes.is_some_and(|m| self.started.elapsed().as_secs_f64() >= 60.0 * m) {
            return Err(Stopped::Minutes);
        }
        Ok(())
    }

    /// Evaluates candidates at stages (`(id, stage index)`) in order, `jobs` at a time, each from the archive of
    /// an earlier sitting when it is there. Returns why it stopped early, if it did.
    fn evaluate_all(
        &mut self,
        work: Vec<(usize, usize)>,
        budget: &Budget,
        jobs: usize,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> anyhow::Result<Option<Stopped>> {
        let mut queue = work.into_iter().peekable();
        while queue.peek().is_some() {
            // Take evaluations from the archive first, in order, until one must be computed.
            let mut chunk = Vec::new();
            while let Some(&(id, k)) = queue.peek() {
                if let Err(s) = self.budget_left(budget) {
                    if chunk.is_empty() {
                        return Ok(Some(s));
                    }
                    break;
                }
                if let Some(hit) = self.cached.get(&self.records[id].hash).and_then(|v| v.get(k)).cloned() {
                    if !chunk.is_empty() {
                        break;
                    }
                    queue.next();
                    self.spent += 1;
                    self.records[id].stages.push(StageResult { index: self.spent, outcome: hit.outcome });
                    continue;
                }
                if chunk.len() == jobs.max(1) || self.budget_left_after(budget, chunk.len()).is_err() {
                    break;
                }
                chunk.push(queue.next().expect("peeked"));
            }
            if chunk.is_empty() {
                continue;
            }
            if stop() {
                return Err(self.interrupted());
            }
            let stages = &self.settings.stages;
            let funnel = self.funnel;
            let jobs_in: Vec<(&Bound, &Stage)> = chunk
                .iter()
                .map(|&(id, k)| (self.bound[id].as_ref().expect("only screened candidates are trained"), &stages[k]))
                .collect();
            let t0 = Instant::now();
            let results: Vec<anyhow::Result<Option<Outcome>>> = if jobs_in.len() == 1 {
                vec![funnel.evaluate(jobs_in[0].0, jobs_in[0].1, stop)]
            } else {
                std::thread::scope(|s| {
                    let handles: Vec<_> =
                        jobs_in.iter().map(|&(b, st)| s.spawn(move || funnel.evaluate(b, st, stop))).collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("an evaluation thread panicked"))))
                        .collect()
                })
            };
            let secs = t0.elapsed().as_secs_f64();
            for (&(id, k), result) in chunk.iter().zip(results) {
                let outcome = match result {
                    Ok(Some(o)) => o,
                    Ok(None) => return Err(self.interrupted()),
                    Err(e) if e.downcast_ref::<Interrupted>().is_some() => return Err(self.interrupted()),
                    Err(e) => {
                        return Err(e.context(format!(
                            "evaluating candidate {} at stage {}",
                            self.records[id].name,
                            k + 1
                        )))
                    }
                };
                self.spent += 1;
                self.fresh += 1;
                self.records[id].stages.push(StageResult { index: self.spent, outcome });
                let line = self.progress_line(id, secs / chunk.len() as f64, budget);
                (self.log)(&line);
            }
            write_outputs(self)?;
        }
        Ok(None)
    }

    fn budget_left_after(&self, budget: &Budget, queued: usize) -> Result<(), Stopped> {
        if budget.evaluations.is_some_and(|n| self.spent + queued >= n) {
            return Err(Stopped::Evaluations);
        }
        Ok(())
    }

    fn interrupted(&mut self) -> anyhow::Error {
        let _ = write_outputs(self);
        Interrupted {
            message: format!(
                "interrupted: search `{}` stopped after {} evaluations; its archive is saved. Run the same command \
                 again to continue (evaluations already in `archive.jsonl` are not repeated)",
                self.out.display(),
                self.spent
            ),
        }
        .into()
    }

    fn progress_line(&self, id: usize, secs: f64, budget: &Budget) -> String {
        let r = &self.records[id];
        let k = r.stage();
        let o = &r.stages[k - 1].outcome;
        let score = match (o.score(), &o.failed) {
            (Some(s), _) => format!("delta {s:+.4}"),
            (None, Some(f)) => format!("failed ({f})"),
            (None, None) => "no score".into(),
        };
        let best =
            self.best_at(k).map_or(String::new(), |(b, s)| format!("  best@{k} {s:+.4} {}", self.records[b].name));
        let of = budget.evaluations.map_or(String::new(), |n| format!("/{n}"));
        format!(
            "search eval {}{of}  stage {k}  {:<18} {score}{best}  {secs:.1} s  ({} candidates, {} rejected, {} failed the checker)",
            self.spent,
            r.name,
            self.records.len(),
            self.counts.rejected.values().sum::<usize>(),
            self.counts.check_failed.values().sum::<usize>()
        )
    }

    /// The best candidate at stage `k` and its score.
    pub fn best_at(&self, k: usize) -> Option<(usize, f64)> {
        self.records
            .iter()
            .filter_map(|r| r.score_at(k).map(|s| (r.id, s)))
            .max_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal).then(b.0.cmp(&a.0)))
    }

    /// Promotions due: at each stage k (below the last), the top `n_k / eta` of its scored results that have not
    /// gone on yet (ties by id).
    fn promotions(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for k in 1..self.settings.stages.len() {
            let mut rung: Vec<(usize, f64)> =
                self.records.iter().filter_map(|r| r.score_at(k).map(|s| (r.id, s))).collect();
            rung.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal).then(a.0.cmp(&b.0)));
            let quota = rung.len() / self.settings.eta;
            for &(id, _) in rung.iter().take(quota) {
                if self.records[id].stage() == k {
                    out.push((id, k));
                }
            }
        }
        out
    }

    /// Runs until the budget is spent or `stop()` asks (then an [`Interrupted`] error after saving).
    pub fn run(&mut self, budget: Budget, jobs: usize, stop: &(dyn Fn() -> bool + Sync)) -> anyhow::Result<Stopped> {
        if budget.evaluations.is_none() && budget.minutes.is_none() {
            bail!("give a budget: --budget-evals N or --minutes M");
        }
        self.generation_zero();
        let mut g = 0;
        loop {
            let fresh: Vec<(usize, usize)> = self
                .records
                .iter()
                .filter(|r| r.generation == g && r.rejection.is_none() && r.stages.is_empty())
                .map(|r| (r.id, 0))
                .collect();
            if let Some(s) = self.evaluate_all(fresh, &budget, jobs, stop)? {
                return self.finish(s);
            }
            loop {
                let due = self.promotions();
                if due.is_empty() {
                    break;
                }
                if let Some(s) = self.evaluate_all(due, &budget, jobs, stop)? {
                    return self.finish(s);
                }
            }
            g += 1;
            let before = self.records.len();
            self.generation(g);
            if self.records.len() == before {
                bail!("generation {g} proposed no candidate (no trained parent, or every proposal failed the checker)");
            }
        }
    }

    fn finish(&mut self, s: Stopped) -> anyhow::Result<Stopped> {
        write_outputs(self)?;
        Ok(s)
    }
}
