//! `backfill new`: the next numbered plan file of a folder, for one operation kind, with every
//! field of the kind written out from the plan schema ([`crate::plan::json_schema`]): the ones
//! given on the command line set, the others commented with what they mean, so the file
//! documents itself and `validate` accepts it once the required ones are filled in.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::sql::QualifiedName;

/// What `backfill new` was asked for.
#[derive(Debug, Clone)]
pub struct NewPlan {
    /// The operation kind.
    pub kind: String,
    /// The table (`table` or `schema.table`).
    pub table: String,
    /// The folder of plans.
    pub dir: PathBuf,
    /// The file name's words after the number (default: `<kind>_<table>`).
    pub name: Option<String>,
    /// Fields set on the command line: `field=value`, the value TOML (`["a", "b"]`, `true`,
    /// `42`) or else taken as a string.
    pub fields: Vec<(String, String)>,
}

/// The kind's entry of the schema: its properties and the required ones.
fn kind_schema(
    schema: &Value,
    kind: &str,
) -> Option<(serde_json::Map<String, Value>, Vec<String>)> {
    let variants = schema["$defs"]["OperationSpec"]["oneOf"].as_array()?;
    let entry = variants
        .iter()
        .find(|v| v["properties"]["kind"]["const"].as_str() == Some(kind))?;
    let properties = entry["properties"].as_object()?.clone();
    let required = entry["required"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Some((properties, required))
}

/// `value` as TOML: as written when it is a TOML value, else a string.
fn toml_value(value: &str) -> String {
    let parsed: std::result::Result<toml::Table, _> = toml::from_str(&format!("v = {value}"));
    if parsed.is_ok() {
        value.to_string()
    } else {
        format!(
            "\"{}\"",
            value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        )
    }
}

/// `# text` lines.
fn commented(text: &str) -> String {
    text.lines().map(|l| format!("# {l}\n")).collect()
}

/// The next number of the folder's plans (`0001` when there are none).
fn next_number(dir: &Path) -> (u64, usize) {
    let mut max = 0;
    let mut width = 4;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
            if !digits.is_empty() && name[digits.len()..].starts_with('_') {
                if let Ok(n) = digits.parse::<u64>() {
                    max = max.max(n);
                    width = width.max(digits.len());
                }
            }
        }
    }
    (max + 1, width)
}

fn slug(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect::<String>()
        .split('_')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

/// The plan's text.
fn render(new: &NewPlan, schema: &Value) -> Result<String> {
    let Some((properties, required)) = kind_schema(schema, &new.kind) else {
        return Err(Error::Usage(format!(
            "no operation kind `{}`; the kinds: {}",
            new.kind,
            crate::ops::KINDS.join(", ")
        )));
    };
    for (field, _) in &new.fields {
        if field == "kind" || !properties.contains_key(field) {
            let known: Vec<&str> = properties
                .keys()
                .map(String::as_str)
                .filter(|k| *k != "kind")
                .collect();
            return Err(Error::Usage(format!(
                "{} has no field `{field}`; its fields: {}",
                new.kind,
                known.join(", ")
            )));
        }
    }
    if QualifiedName::parse(&new.table).is_none() {
        return Err(Error::Usage(format!(
            "--table {:?} is not a table name: write table or schema.table",
            new.table
        )));
    }
    let mut text = String::new();
    if new.dir.join("plan.schema.json").is_file() {
        text.push_str("#:schema ./plan.schema.json\n");
    }
    text.push_str(&format!(
        "# {kind} on {table}, written by `backfill new`. Fill in the fields (required ones are\n# marked), then `backfill validate` this file. Every field: `backfill schema`; what each\n# kind does in each phase: the README, \"Operation kinds\".\ntable = {}\n\n[[operations]]\nkind = \"{kind}\"\n",
        toml_value(&new.table),
        kind = new.kind,
        table = new.table,
    ));
    let mut names: Vec<&String> = properties.keys().filter(|k| *k != "kind").collect();
    // Required fields first, each group in the schema's order.
    names.sort_by_key(|k| !required.contains(k));
    for name in names {
        let description = properties[name]["description"].as_str().unwrap_or("");
        let must = required.contains(name);
        text.push('\n');
        text.push_str(&commented(&format!(
            "{}{description}",
            if must { "(required) " } else { "" }
        )));
        match new.fields.iter().find(|(f, _)| f == name) {
            Some((_, value)) => text.push_str(&format!("{name} = {}\n", toml_value(value))),
            None => text.push_str(&format!("# {name} =\n")),
        }
    }
    text.push_str(
        "\n[release]\n# Expand, dual-write and backfill are due from this release on:\n# expand = \"1.4.0\"\n# Contract is due from this release on (a later one):\n# contract = \"1.5.0\"\n",
    );
    Ok(text)
}

/// Writes the plan (never over an existing file) and returns its path.
pub fn write(new: &NewPlan) -> Result<PathBuf> {
    let text = render(new, &crate::plan::json_schema())?;
    let words = match &new.name {
        Some(n) => slug(n),
        None => slug(&format!("{}_{}", new.kind, new.table)),
    };
    if words.is_empty() {
        return Err(Error::Usage(
            "--name needs letters or digits: it names the file and the plan".to_string(),
        ));
    }
    std::fs::create_dir_all(&new.dir).map_err(|source| Error::Write {
        path: new.dir.clone(),
        source,
    })?;
    let (number, width) = next_number(&new.dir);
    let path = new
        .dir
        .join(format!("{number:0width$}_{words}.toml", width = width));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path);
    let mut file = file.map_err(|source| Error::Write {
        path: path.clone(),
        source,
    })?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(|source| Error::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_toml_or_strings() {
        assert_eq!(toml_value("email"), "\"email\"");
        assert_eq!(toml_value("[\"a\", \"b\"]"), "[\"a\", \"b\"]");
        assert_eq!(toml_value("true"), "true");
        assert_eq!(toml_value("lower(\"Email\")"), "\"lower(\\\"Email\\\")\"");
        assert_eq!(slug("Rename e-mail!"), "rename_e_mail");
    }
}
