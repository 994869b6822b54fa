//! Envoy's callback symbols against jisr's declarations and CONSTRAINTS.md's callback tables.
//!
//! The tests that use this (`versions.rs` for HTTP filters, `network_abi.rs` for the L4 kinds)
//! run on every Envoy of the version matrix, so each table's "Since" column is checked against
//! 1.38.3, 1.39.3 and 1.40.0 in turn.

use std::collections::BTreeSet;
use std::sync::OnceLock;

/// Every `envoy_dynamic_module_callback_*` name the running Envoy binary exports, read from its
/// dynamic string table (a name there ends with a NUL; log messages that quote one do not).
pub fn exported_callbacks() -> &'static BTreeSet<String> {
    static NAMES: OnceLock<BTreeSet<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let bin = std::fs::read(crate::envoy_bin()).expect("read the Envoy binary");
        names_in_string_table(&bin, b"envoy_dynamic_module_callback_")
    })
}

/// The exported names with `prefix` (e.g. `envoy_dynamic_module_callback_network_`).
pub fn exported_with(prefix: &str) -> BTreeSet<String> {
    exported_callbacks()
        .iter()
        .filter(|n| n.starts_with(prefix))
        .cloned()
        .collect()
}

fn names_in_string_table(bin: &[u8], prefix: &[u8]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut at = 0;
    while let Some(i) = find(&bin[at..], prefix) {
        let start = at + i;
        let len = bin[start..]
            .iter()
            .position(|b| !is_ident_byte(*b))
            .unwrap_or(0);
        if start > 0 && bin[start - 1] == 0 && bin.get(start + len) == Some(&0) {
            names.insert(String::from_utf8_lossy(&bin[start..start + len]).into_owned());
        }
        at = start + len.max(1);
    }
    names
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    let mut from = 0;
    while let Some(p) = hay[from..].iter().position(|b| *b == first) {
        let i = from + p;
        if hay[i..].starts_with(needle) {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

/// Identifiers with `prefix` that follow `marker` in `src` (e.g. `fn ` for declarations in an
/// `extern` block, `c"` for the names a late table looks up).
fn after(src: &str, marker: &str, prefix: &str) -> BTreeSet<String> {
    let needle = format!("{marker}{prefix}");
    let mut out = BTreeSet::new();
    let mut rest = src;
    while let Some(i) = rest.find(&needle) {
        let tail = &rest[i + marker.len()..];
        let len = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..len].to_string());
        rest = &tail[len..];
    }
    out
}

/// Callbacks with `prefix` that `src` declares for direct linking (`fn <name>(`).
pub fn linked(src: &str, prefix: &str) -> BTreeSet<String> {
    after(src, "fn ", prefix)
}

/// Callbacks with `prefix` that `src` looks up at run time (`c"<name>"` in a late table).
pub fn late(src: &str, prefix: &str) -> BTreeSet<String> {
    after(src, "c\"", prefix)
}

/// One row of a callback table: the full C name and the Envoy minor versions that export it,
/// `since..until` (`until` is `None` while the newest version still has it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// `envoy_dynamic_module_callback_...`.
    pub name: String,
    /// First minor version (of 1.x) that exports it.
    pub since: u32,
    /// First minor version that no longer does, if any.
    pub until: Option<u32>,
}

impl Row {
    /// Whether Envoy `(1, minor)` exports this callback, by the table.
    pub fn in_version(&self, minor: (u32, u32)) -> bool {
        minor.0 == 1 && self.since <= minor.1 && self.until.is_none_or(|u| minor.1 < u)
    }
}

/// The rows of the table under the heading `heading` (a whole `## ...` line) in `markdown`,
/// up to the next `## ` heading: rows whose first cell is a backticked lowercase name and
/// whose third is `1.<minor>`, optionally followed by `(gone in 1.<minor>)`. Names get
/// `prefix` in front. Panics if the heading is missing, so a renamed section cannot pass as an
/// empty table.
pub fn table(markdown: &str, heading: &str, prefix: &str) -> Vec<Row> {
    let start = markdown
        .lines()
        .position(|l| l.trim_end() == heading)
        .unwrap_or_else(|| panic!("CONSTRAINTS.md has no `{heading}` section"));
    markdown
        .lines()
        .skip(start + 1)
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            if !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
            {
                return None;
            }
            let (since, gone) = match cells.get(3)?.split_once(" (gone in ") {
                Some((s, g)) => (s, Some(g.strip_suffix(')')?)),
                None => (*cells.get(3)?, None),
            };
            let minor = |v: &str| v.strip_prefix("1.")?.parse::<u32>().ok();
            Some(Row {
                name: format!("{prefix}{name}"),
                since: minor(since)?,
                until: match gone {
                    Some(g) => Some(minor(g)?),
                    None => None,
                },
            })
        })
        .collect()
}

/// One kind's callbacks as jisr declares them and CONSTRAINTS.md lists them.
pub struct KindAbi<'a> {
    /// The kind's callback prefix, e.g. `envoy_dynamic_module_callback_network_`.
    pub prefix: &'a str,
    /// Names declared for direct linking.
    pub linked: BTreeSet<String>,
    /// Names looked up at run time.
    pub late: BTreeSet<String>,
    /// The kind's CONSTRAINTS.md table.
    pub rows: Vec<Row>,
}

/// What is wrong between `abi` and the Envoy `minor` whose exports (with the kind's prefix)
/// are `exported`; empty when all holds:
///
/// * each directly linked callback is exported (or the module would not load: `BIND_NOW`);
/// * each exported callback is declared, linked or late;
/// * each declared callback has a table row, and each row one declaration;
/// * each row's versions agree with `exported`;
/// * a callback some supported version lacks (since after 1.38, or gone) is looked up late,
///   never linked; and none is both.
pub fn problems(abi: &KindAbi, exported: &BTreeSet<String>, minor: (u32, u32)) -> Vec<String> {
    let mut out = Vec::new();
    for name in &abi.linked {
        if !exported.contains(name) {
            out.push(format!("{name} is linked directly but this Envoy lacks it"));
        }
        if abi.late.contains(name) {
            out.push(format!("{name} is both linked and looked up late"));
        }
    }
    for name in exported {
        if !abi.linked.contains(name) && !abi.late.contains(name) {
            out.push(format!("{name} is exported by this Envoy but not declared"));
        }
    }
    let listed: BTreeSet<&str> = abi.rows.iter().map(|r| r.name.as_str()).collect();
    if listed.len() != abi.rows.len() {
        out.push(format!("the {} table lists a name twice", abi.prefix));
    }
    for name in abi.linked.iter().chain(&abi.late) {
        if !listed.contains(name.as_str()) {
            out.push(format!(
                "{name} is declared but CONSTRAINTS.md does not list it"
            ));
        }
    }
    for row in &abi.rows {
        let name = &row.name;
        if !abi.linked.contains(name) && !abi.late.contains(name) {
            out.push(format!("{name} is listed but not declared"));
        }
        if exported.contains(name) != row.in_version(minor) {
            out.push(format!(
                "{name}: the table says since 1.{}{}, Envoy {minor:?} {}",
                row.since,
                row.until
                    .map(|u| format!(" until 1.{u}"))
                    .unwrap_or_default(),
                if exported.contains(name) {
                    "exports it"
                } else {
                    "does not export it"
                }
            ));
        }
        if (row.since > 38 || row.until.is_some()) && !abi.late.contains(name) {
            out.push(format!(
                "{name} is missing from some supported Envoy, so it must be looked up late"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_table_names_need_nuls_on_both_sides() {
        let bin = b"\0envoy_dynamic_module_callback_a_b\0xenvoy_dynamic_module_callback_c\0\
                    \0envoy_dynamic_module_callback_d: not here\0";
        let names = names_in_string_table(bin, b"envoy_dynamic_module_callback_");
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["envoy_dynamic_module_callback_a_b"]
        );
    }

    #[test]
    fn table_reads_only_its_section() {
        let md = "## A\n| `x` | y | 1.38 |\n## B\n| C (`p_…`) | api | Since |\n|---|---|---|\n\
                  | `one` | — | 1.39 |\n| `two_2` | — | 1.38 (gone in 1.39) |\n| `Bad` | — | 1.38 |\n\
                  ## C\n| `z` | — | 1.40 |\n";
        let rows = table(md, "## B", "p_");
        assert_eq!(
            rows,
            [
                Row {
                    name: "p_one".into(),
                    since: 39,
                    until: None
                },
                Row {
                    name: "p_two_2".into(),
                    since: 38,
                    until: Some(39)
                },
            ]
        );
        assert!(rows[1].in_version((1, 38)) && !rows[1].in_version((1, 39)));
        assert!(!rows[0].in_version((1, 38)) && rows[0].in_version((1, 40)));
    }

    #[test]
    fn declarations_are_read_by_their_form() {
        let src = "unsafe extern \"C\" {\n    pub fn p_a(x: u32);\n}\n// p_comment\n\
                   late! { b: F = c\"p_b\", }\n";
        assert_eq!(linked(src, "p_").into_iter().collect::<Vec<_>>(), ["p_a"]);
        assert_eq!(late(src, "p_").into_iter().collect::<Vec<_>>(), ["p_b"]);
    }
}
