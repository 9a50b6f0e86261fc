//! Kamailio's `dispatcher.list`: `setid destination [flags [priority [attrs]]]`
//! a line, `#` comments, blank lines (COMPAT.md).

use std::fmt::Write as _;

use super::sets::{
    DestinationSets, DestinationSpec, LoadError, LoadErrorKind, Origin, SetLimits, SetsBuilder,
};

/// Most skipped lines reported one by one in [`ListParse::skipped`].
const MAX_REPORTED_SKIPS: usize = 64;

/// How to read a list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// A bad destination URI fails the file (Kamailio `ds_load_mode=1`);
    /// by default the line is skipped and reported, as Kamailio does.
    pub strict_uris: bool,
    /// Bounds on the file.
    pub limits: SetLimits,
}

/// A list that loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListParse {
    /// The sets.
    pub sets: DestinationSets,
    /// Lines skipped for a bad URI (the first 64), for warnings.
    pub skipped: Vec<LoadError>,
    /// All lines skipped.
    pub skipped_total: usize,
}

/// Parses a whole `dispatcher.list`. Any bad line other than a bad URI (see
/// [`ListOptions::strict_uris`]) fails the whole file, naming `file` and the
/// line, so a reload that fails keeps the running sets.
pub fn parse_list(text: &[u8], file: &str, options: &ListOptions) -> Result<ListParse, LoadError> {
    let limits = &options.limits;
    if text.len() > limits.max_file_bytes {
        let kind = LoadErrorKind::FileTooLarge {
            max_bytes: limits.max_file_bytes,
        };
        return Err(LoadError {
            origin: Origin::File {
                file: file.to_string(),
            },
            kind,
        });
    }
    let mut builder = SetsBuilder::new(*limits);
    let mut out = ListParse {
        sets: DestinationSets::default(),
        skipped: Vec::new(),
        skipped_total: 0,
    };
    // Bounded: the file size bounds the number of lines.
    for (n, line) in text.split(|&b| b == b'\n').enumerate() {
        let origin = || Origin::Line {
            file: file.to_string(),
            line: n + 1,
        };
        let result = parse_line(line, limits).and_then(|spec| match spec {
            Some(spec) => builder.push(&spec),
            None => Ok(()),
        });
        match result {
            Ok(()) => {}
            Err(kind @ LoadErrorKind::BadUri { .. }) if !options.strict_uris => {
                out.skipped_total += 1;
                if out.skipped.len() < MAX_REPORTED_SKIPS {
                    out.skipped.push(LoadError {
                        origin: origin(),
                        kind,
                    });
                }
            }
            Err(kind) => {
                return Err(LoadError {
                    origin: origin(),
                    kind,
                })
            }
        }
    }
    out.sets = builder.finish();
    Ok(out)
}

/// One line: `None` for a blank or comment line.
fn parse_line<'a>(
    raw: &'a [u8],
    limits: &SetLimits,
) -> Result<Option<DestinationSpec<'a>>, LoadErrorKind> {
    if raw.len() > limits.max_line_bytes {
        return Err(LoadErrorKind::LineTooLong {
            max_bytes: limits.max_line_bytes,
        });
    }
    let line = std::str::from_utf8(raw).map_err(|_| LoadErrorKind::NotUtf8)?;
    let mut fields = strip_comment(line).split_ascii_whitespace();
    let Some(set) = fields.next() else {
        return Ok(None);
    };
    let set = set
        .parse::<u32>()
        .map_err(|_| LoadErrorKind::BadSetId(set.to_string()))?;
    let uri = fields.next().ok_or(LoadErrorKind::MissingUri)?;
    let flags = fields.next().map(parse_flags).transpose()?.unwrap_or(0);
    let priority = fields.next().map(parse_priority).transpose()?.unwrap_or(0);
    let attrs = fields.next().unwrap_or("");
    if let Some(extra) = fields.next() {
        return Err(LoadErrorKind::ExtraField(extra.to_string()));
    }
    Ok(Some(DestinationSpec {
        set,
        uri,
        flags,
        priority,
        attrs,
    }))
}

/// The line up to a `#` that starts it or starts a field.
fn strip_comment(line: &str) -> &str {
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        if c == '#' && prev_space {
            return &line[..i];
        }
        prev_space = c.is_ascii_whitespace();
    }
    line
}

fn parse_flags(text: &str) -> Result<u32, LoadErrorKind> {
    let hex = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X"));
    let parsed = match hex {
        Some(digits) => u32::from_str_radix(digits, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| LoadErrorKind::BadFlags(text.to_string()))
}

fn parse_priority(text: &str) -> Result<i32, LoadErrorKind> {
    text.parse()
        .map_err(|_| LoadErrorKind::BadPriority(text.to_string()))
}

/// Writes sets as a `dispatcher.list` that [`parse_list`] reads back to equal
/// sets.
pub fn format_list(sets: &DestinationSets) -> String {
    let mut out = String::from("# setid destination flags priority attrs\n");
    for set in sets.sets() {
        for d in &set.destinations {
            // Writing to a String cannot fail.
            let _ = write!(out, "{} {} {} {}", set.id, d.uri, d.flags, d.priority);
            if !d.attrs.body.is_empty() {
                out.push(' ');
                out.push_str(&d.attrs.body);
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_only_where_a_field_starts() {
        assert_eq!(strip_comment("1 sip:a # x"), "1 sip:a ");
        assert_eq!(strip_comment("# all"), "");
        assert_eq!(strip_comment("1 sip:a;x=#y"), "1 sip:a;x=#y");
    }

    #[test]
    fn flags_decimal_and_hex() {
        assert_eq!(parse_flags("8"), Ok(8));
        assert_eq!(parse_flags("0x20"), Ok(32));
        assert!(parse_flags("0xZ").is_err());
        assert!(parse_flags("-1").is_err());
    }
}
