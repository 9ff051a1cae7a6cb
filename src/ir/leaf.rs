//! The leaves of the IR: model passes (denoising errors and prediction-space distances) on a view — images
//! under one `(t, eps)` draw — and the data values a step supplies (timestep quantities, progress).

/// Which model a leaf evaluates.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ModelRef {
    /// The trained policy: its leaves carry gradient.
    Policy,
    /// A frozen reference, by name.
    Reference(String),
}

impl ModelRef {
    /// `policy` or the reference's name.
    pub fn name(&self) -> &str {
        match self {
            ModelRef::Policy => "policy",
            ModelRef::Reference(n) => n,
        }
    }
}

/// Which images a leaf is evaluated on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ImageRef {
    /// Data winners.
    Winner,
    /// Data losers.
    Loser,
    /// The one image of an unpaired labelled sample (`data labelled`).
    Image,
    /// Reference samples of `sample(...)` number k.
    Sample(u32),
}

impl ImageRef {
    /// Whether these are generated images (`sample(...)`) rather than the data's.
    pub fn is_sample(self) -> bool {
        matches!(self, ImageRef::Sample(_))
    }
}

/// Images under one independent `(t, eps)` draw: draw 0 is the default, `draws(K, ...)` and `draw = k` name
/// the others. Ordered draw first, so a step draws noise draw by draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct View {
    /// Which draw (0-based).
    pub draw: u32,
    /// Which images.
    pub images: ImageRef,
}

impl View {
    /// `winner`, `loser`, `sample0`; `winner_d1` for draw 1.
    pub fn name(&self) -> String {
        let x = match self.images {
            ImageRef::Winner => "winner".to_string(),
            ImageRef::Loser => "loser".to_string(),
            ImageRef::Image => "image".to_string(),
            ImageRef::Sample(k) => format!("sample{k}"),
        };
        if self.draw == 0 {
            x
        } else {
            format!("{x}_d{}", self.draw)
        }
    }
}

/// A leaf: per sample, the mean over C,H,W of the squared difference between `model`'s prediction on the noised
/// `images` and a target — the noise `eps` (`err`), or the prediction of the frozen model `against` on the same
/// input (`dist`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Input {
    /// The model.
    pub model: ModelRef,
    /// The images.
    pub images: ImageRef,
    /// Which `(t, eps)` draw.
    pub draw: u32,
    /// `None`: the target is `eps`; `Some(R)`: the target is reference `R`'s prediction (no gradient).
    pub against: Option<String>,
}

impl Input {
    /// The images and draw this leaf is evaluated on.
    pub fn view(&self) -> View {
        View { draw: self.draw, images: self.images }
    }

    /// The name used by `seppoc explain` and `seppoc loss --inputs`, e.g. `e_policy_winner`, `e_ref_sample0`,
    /// `e_policy_winner_d1` (draw 1), `dist_policy_ref_winner`.
    pub fn name(&self) -> String {
        match &self.against {
            None => format!("e_{}_{}", self.model.name(), self.view().name()),
            Some(r) => format!("dist_{}_{r}_{}", self.model.name(), self.view().name()),
        }
    }
}

/// Index of a datum in [`super::Objective::datums`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DatumId(pub u32);

/// A per-sample quantity of a noise draw, as the noise schedule defines it for the model's parametrisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimeQty {
    /// `timestep(x)`: the diffusion time in [0, 1] (for a discrete schedule, index / T).
    Timestep,
    /// `alpha(x)`: the signal scale in `x_t = alpha x_0 + sigma eps`.
    Alpha,
    /// `sigma(x)`: the noise scale.
    Sigma,
    /// `snr(x)`: `alpha^2 / sigma^2`.
    Snr,
}

impl TimeQty {
    /// The function's name in `.obj` files.
    pub fn name(self) -> &'static str {
        match self {
            TimeQty::Timestep => "timestep",
            TimeQty::Alpha => "alpha",
            TimeQty::Sigma => "sigma",
            TimeQty::Snr => "snr",
        }
    }
}

/// A value the step supplies besides the model passes; constant with respect to the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Datum {
    /// A timestep quantity of a view, per sample.
    Time(TimeQty, View),
    /// The training progress `s / S` (updates applied over the run's updates), one value per step.
    Progress,
    /// `num_timesteps`: the number `T` of the noise schedule's training timesteps, one value per run.
    Timesteps,
    /// `label`: the sample's label from the data (the winner's for pairs: 1, or 0.5 for a tie; 1 or 0 for
    /// `data labelled`), per sample.
    Label,
    /// `weight`: the sample's weight from the data (the comparison's `weight` column), per sample.
    Weight,
    /// `reward(x)`, per sample: for a data image the data's reward (`reward_0`/`reward_1` columns); for
    /// generated images (`ImageRef::Sample`) the score of the run's reward model, computed at training time.
    Reward(ImageRef),
}

impl Datum {
    /// The name used by `seppoc explain` and `seppoc loss --inputs`: `snr_winner`, `timestep_loser_d1`,
    /// `progress`, `num_timesteps`, `label`, `weight`, `reward_winner`.
    pub fn name(&self) -> String {
        match self {
            Datum::Time(q, v) => format!("{}_{}", q.name(), v.name()),
            Datum::Progress => "progress".to_string(),
            Datum::Timesteps => "num_timesteps".to_string(),
            Datum::Label => "label".to_string(),
            Datum::Weight => "weight".to_string(),
            Datum::Reward(x) => format!("reward_{}", View { draw: 0, images: *x }.name()),
        }
    }

    /// Whether it has one value per step rather than per sample.
    pub fn per_step(&self) -> bool {
        matches!(self, Datum::Progress | Datum::Timesteps)
    }

    /// Whether it is read from the data set (a field of each sample) rather than from the step or the noise.
    pub fn is_field(&self) -> bool {
        matches!(self, Datum::Label | Datum::Weight) || matches!(self, Datum::Reward(x) if !x.is_sample())
    }

    /// Whether it is the reward of generated images, which the run's reward model scores at training time.
    pub fn is_online_reward(&self) -> bool {
        matches!(self, Datum::Reward(x) if x.is_sample())
    }
}
