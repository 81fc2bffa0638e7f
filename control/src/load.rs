//! Loading rule files into the filter: iptables-save (IPv4), ip6tables-save (IPv6) and
//! security groups (both families).

use crate::groups::compile_groups;
use crate::rules::{compile_parsed, compile_raw, parse_iptables, Hook, RuleError};
use dataplane::classify::{Classifier, FlatRule, RuleSet, Tree};
use dataplane::filter::Filter;
use dataplane::wire::Family;
use std::path::Path;

/// Why rule files could not be loaded; nothing is applied when any file fails.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Rules(Vec<RuleError>),
    #[error(transparent)]
    Groups(#[from] crate::groups::GroupsError),
    #[error("{0}")]
    Conflict(String),
    #[error("building the classifier: {0}")]
    Classifier(String),
}

/// Builds the classifier for a compiled rule set.
pub type MakeClassifier<'a> = dyn Fn(&[FlatRule]) -> Result<Box<dyn Classifier>, String> + 'a;

/// The decision tree (the default; the linear scan is the reference).
pub fn tree_classifier(rules: &[FlatRule]) -> Result<Box<dyn Classifier>, String> {
    Ok(Box::new(Tree::new(rules)))
}

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Where the rules come from.
#[derive(Clone, Debug, Default)]
pub struct RuleFiles<'a> {
    pub rules: Option<&'a Path>,
    pub rules6: Option<&'a Path>,
    pub groups: Option<&'a Path>,
}

/// Compiles every given file; a family with neither iptables rules nor groups is not filtered.
pub fn load_filter(
    files: &RuleFiles<'_>,
    ports: &[String],
    hook: Hook,
    make: &MakeClassifier<'_>,
) -> Result<Filter, LoadError> {
    let with = |rs: RuleSet| -> Result<RuleSet, LoadError> {
        let c = make(&rs.rules).map_err(LoadError::Classifier)?;
        Ok(rs.with_classifier(c))
    };
    if files.groups.is_some() && (files.rules.is_some() || files.rules6.is_some()) {
        return Err(LoadError::Conflict(
            "security groups and iptables rules together are not supported yet: give one or the other".into(),
        ));
    }
    let mut filter = Filter::default();
    let mut errors = Vec::new();
    for (path, family) in [(files.rules, Family::V4), (files.rules6, Family::V6)] {
        let Some(path) = path else { continue };
        let text = read(path)?;
        let compiled = parse_iptables(&path.display().to_string(), &text, family, ports)
            .and_then(|parsed| Ok((compile_parsed(&parsed, hook)?, compile_raw(&parsed)?)));
        match compiled {
            Ok((rs, raw)) => {
                let raw = raw.map(&with).transpose()?;
                match family {
                    Family::V4 => (filter.v4, filter.raw_v4) = (Some(with(rs)?), raw),
                    Family::V6 => (filter.v6, filter.raw_v6) = (Some(with(rs)?), raw),
                }
            }
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return Err(LoadError::Rules(errors));
    }
    if let Some(path) = files.groups {
        let text = read(path)?;
        let name = path.display().to_string();
        filter.v4 = Some(with(compile_groups(&name, &text, Family::V4)?)?);
        filter.v6 = Some(with(compile_groups(&name, &text, Family::V6)?)?);
    }
    Ok(filter)
}
