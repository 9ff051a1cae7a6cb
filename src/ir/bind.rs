//! A bound objective: the lowered objective together with one checked value per declared parameter, bound by
//! name once (after `--set`). The oracle and the compiled graph read parameters from it by [`ParamId`]; its
//! value list always matches the objective's parameters, by construction.

use super::{Objective, ParamId};
use std::fmt;

/// An objective whose every parameter has a value: finite, an integer where declared `int`, inside its domain.
/// Made only by [`Objective::bind`] or [`Objective::bind_defaults`]; reads as its [`Objective`] through `Deref`.
#[derive(Clone, Debug)]
pub struct Bound {
    obj: Objective,
    /// `values[k]` is the value of `obj.params[k]`.
    values: Vec<f64>,
}

/// Why a list of parameter values cannot be bound to an objective (the first problem found, naming the
/// parameter).
#[derive(Clone, Debug, PartialEq)]
pub enum BindError {
    /// A value for a name the objective does not declare.
    Unknown {
        /// The name given.
        name: String,
        /// The objective's parameters, in declaration order.
        declared: Vec<String>,
    },
    /// Two values for one parameter.
    Duplicate {
        /// The parameter.
        name: String,
    },
    /// A declared parameter without a value.
    Missing {
        /// The parameter.
        name: String,
    },
    /// A NaN or infinite value.
    NonFinite {
        /// The parameter.
        name: String,
        /// The value given.
        value: f64,
    },
    /// A non-integer value for a parameter declared `int`.
    NotInteger {
        /// The parameter.
        name: String,
        /// The value given.
        value: f64,
    },
    /// A value outside the parameter's declared domain.
    OutOfDomain {
        /// The parameter.
        name: String,
        /// The value given.
        value: f64,
        /// The domain, e.g. `(0, inf)`.
        domain: String,
    },
    /// A value that a `sample(...)` setting given by this parameter does not accept.
    SampleSetting {
        /// The parameter.
        name: String,
        /// The value given.
        value: f64,
        /// What the setting accepts.
        why: String,
    },
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::Unknown { name, declared } => write!(
                f,
                "no parameter `{name}` (declared parameters: {})",
                if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
            ),
            BindError::Duplicate { name } => write!(f, "parameter `{name}` is given more than once"),
            BindError::Missing { name } => write!(f, "parameter `{name}` has no value"),
            BindError::NonFinite { name, value } => write!(f, "parameter `{name}` = {value} is not finite"),
            BindError::NotInteger { name, value } => {
                write!(f, "parameter `{name}` is declared `int`; {value} is not an integer")
            }
            BindError::OutOfDomain { name, value, domain } => {
                write!(f, "parameter `{name}` = {value} is outside the domain {domain}")
            }
            BindError::SampleSetting { name, value, why } => write!(f, "parameter `{name}` = {value}: {why}"),
        }
    }
}

impl std::error::Error for BindError {}

impl Objective {
    /// Binds a value to every declared parameter by name (any order). Each parameter needs exactly one value,
    /// finite, an integer if declared `int` and inside its domain; a name the objective does not declare is an
    /// error.
    pub fn bind<S: AsRef<str>>(&self, values: &[(S, f64)]) -> Result<Bound, BindError> {
        let mut bound: Vec<Option<f64>> = vec![None; self.params.len()];
        for (name, value) in values {
            let name = name.as_ref();
            let Some(k) = self.params.iter().position(|p| p.name == name) else {
                let declared = self.params.iter().map(|p| p.name.clone()).collect();
                return Err(BindError::Unknown { name: name.to_string(), declared });
            };
            let (param, name, value) = (&self.params[k], name.to_string(), *value);
            if bound[k].is_some() {
                return Err(BindError::Duplicate { name });
            }
            if !value.is_finite() {
                return Err(BindError::NonFinite { name, value });
            }
            if param.integer && value.fract() != 0.0 {
                return Err(BindError::NotInteger { name, value });
            }
            if let Some(domain) = crate::check::domain_error(param, value) {
                return Err(BindError::OutOfDomain { name, value, domain });
            }
            bound[k] = Some(value);
        }
        let values = bound
            .into_iter()
            .zip(&self.params)
            .map(|(v, p)| v.ok_or_else(|| BindError::Missing { name: p.name.clone() }))
            .collect::<Result<Vec<f64>, _>>()?;
        for spec in &self.samples {
            for (setting, name) in &spec.from_params {
                let Some(k) = self.params.iter().position(|p| &p.name == name) else { continue };
                if let Some(why) = setting.reject(values[k]) {
                    return Err(BindError::SampleSetting { name: name.clone(), value: values[k], why });
                }
            }
        }
        Ok(self.bound_to(values))
    }

    /// Binds every parameter to its declared default (which the checker has validated).
    pub fn bind_defaults(&self) -> Bound {
        self.bound_to(self.params.iter().map(|p| p.default).collect())
    }

    /// The bound objective, with `sample(...)` settings given by parameters set to their values.
    fn bound_to(&self, values: Vec<f64>) -> Bound {
        let mut obj = self.clone();
        let value = |name: &str| self.params.iter().position(|p| p.name == name).map(|k| values[k]);
        obj.samples = self.samples.iter().map(|s| s.with_params(value)).collect();
        Bound { obj, values }
    }
}

impl Bound {
    /// The objective.
    pub fn objective(&self) -> &Objective {
        &self.obj
    }

    /// The value of a parameter.
    pub fn value(&self, id: ParamId) -> f64 {
        self.values[id.0 as usize]
    }

    /// The value of the parameter called `name`, if declared.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.obj.params.iter().position(|p| p.name == name).map(|k| self.values[k])
    }

    /// Every parameter with its value, in declaration order.
    pub fn named_values(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        self.obj.params.iter().map(|p| p.name.as_str()).zip(self.values.iter().copied())
    }
}

impl std::ops::Deref for Bound {
    type Target = Objective;

    fn deref(&self) -> &Objective {
        &self.obj
    }
}
