//! Loading rule files into the filter: iptables-save (IPv4), ip6tables-save (IPv6) and
//! security groups (both families).

use crate::groups::compile_groups;
use crate::rules::{compile_iptables, Hook, RuleError};
use dataplane::classify::{RuleSet, Tree};
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
) -> Result<Filter, LoadError> {
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
        match compile_iptables(&path.display().to_string(), &text, family, ports, hook) {
            Ok(rs) => match family {
                Family::V4 => filter.v4 = Some(with_tree(rs)),
                Family::V6 => filter.v6 = Some(with_tree(rs)),
            },
            Err(e) => errors.extend(e),
        }
    }
    if !errors.is_empty() {
        return Err(LoadError::Rules(errors));
    }
    if let Some(path) = files.groups {
        let text = read(path)?;
        let name = path.display().to_string();
        filter.v4 = Some(with_tree(compile_groups(&name, &text, Family::V4)?));
        filter.v6 = Some(with_tree(compile_groups(&name, &text, Family::V6)?));
    }
    Ok(filter)
}

/// Gives a compiled rule set the decision-tree classifier (the linear scan is the reference).
fn with_tree(rs: RuleSet) -> RuleSet {
    let tree = Tree::new(&rs.rules);
    rs.with_classifier(Box::new(tree))
}
